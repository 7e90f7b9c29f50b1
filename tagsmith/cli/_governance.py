"""What governed commands share: the caller's role, permission checks, governed reads.

A helper module: it imports no command module. The policy and the audit log themselves
come from :class:`tagsmith.project.Project`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tags.audit import default_actor
from tags.errors import AccessDenied
from tags.policy import OWNER
from tagsmith.project import Project

if TYPE_CHECKING:
    from tags.access import TagReader
    from tags.policy import AccessPolicy

__all__ = [
    "SELF_ASSERTED_HINT",
    "check_purpose",
    "consent_filter",
    "definition_role",
    "lint_findings",
    "make_reader",
    "purpose_option",
    "require",
    "resolve_role",
    "role_option",
]

F = TypeVar("F", bound=Callable[..., Any])

# On the local CLI nothing authenticates the caller: whoever runs it owns the project's
# files anyway, so by default it acts as 'owner'. A named role only limits what a
# command does (a script can run with less power). The service takes the role from
# the API key.
SELF_ASSERTED_HINT = (
    "On the local CLI the role is self-asserted (--role or TAGSMITH_ROLE): pass a role "
    "that may, e.g. --role admin, or name none to act as 'owner' (in projects without "
    "access.cli_roles: true). The HTTP service takes the role from the caller's API key "
    "instead."
)


def role_option(func: F) -> F:
    """``--role``: the caller's role (default: TAGSMITH_ROLE, then owner)."""
    return click.option(
        "--role",
        default=None,
        metavar="ROLE",
        help="Act under this policy role, with less power than the owner (default: "
        "$TAGSMITH_ROLE, then 'owner'; access.default_role if access.cli_roles is on).",
    )(func)


def resolve_role(project: Project, role: str | None) -> str:
    """The caller's role: the option, else ``TAGSMITH_ROLE``, else the project's default.

    The default is ``owner`` (the local project belongs to whoever runs the CLI) unless
    the project opts in to CLI roles (``access.cli_roles``): then ``access.default_role``.
    """
    named = role or os.environ.get("TAGSMITH_ROLE")
    if named:
        return named
    access = project.config.access
    return access.default_role if access.cli_roles else OWNER


def definition_role(project: Project, role: str | None) -> str:
    """The role a stored definition (a trigger, a sync) acts for when it runs later.

    The option or ``TAGSMITH_ROLE``, else ``access.default_role``: never the CLI's
    built-in owner, which the dispatcher and the service do not know.
    """
    return role or os.environ.get("TAGSMITH_ROLE") or project.config.access.default_role


def require(project: Project, role: str, action: str, *, query: str) -> AccessPolicy:
    """Refuse (and audit the refusal) unless ``role`` may take ``action``."""
    pol = project.policy()
    try:
        pol.require(role, action)
    except Exception as exc:
        project.audit_log().append(
            actor=default_actor(),
            role=role,
            action="denied",
            query=query,
            extra={"requested_action": action, "reason": str(exc)},
        )
        if isinstance(exc, AccessDenied):
            raise AccessDenied(f"{exc} {SELF_ASSERTED_HINT}") from exc
        raise
    return pol


def make_reader(project: Project, role: str | None) -> TagReader:
    """The caller's governed reader of the project's tag store (filters and audits reads)."""
    from tags.access import TagReader

    return TagReader(
        project.tag_store(),
        project.catalogue(),
        project.policy(),
        project.audit_log(),
        role=resolve_role(project, role),
    )


def lint_findings(project: Project) -> list[Any]:
    """``tags lint`` findings of the project (catalogue names; the tag store when written)."""
    from tags.lint import lint_catalogue

    store = project.tag_store()
    return lint_catalogue(
        project.catalogue(), store if store.exists() else None, project.config.governance.lint
    )


def purpose_option(func: F) -> F:
    """``--purpose``: what the exported data will be used for (checked against consent)."""
    return click.option(
        "--purpose",
        default=None,
        metavar="PURPOSE",
        help="What the data is for (required when governance.consent declares purposes); "
        "customers who did not consent to it are left out.",
    )(func)


def check_purpose(project: Project, purpose: str | None, *, what: str) -> str | None:
    """The declared ``purpose`` (None when consent is not checked); refuses (exit 2) a
    missing or undeclared one before anything is written."""
    book = project.consent()
    if not book.enabled:
        return purpose
    return book.check_purpose(purpose, what=what)


def consent_filter(
    project: Project, frame: Any, purpose: str | None, *, role: str, what: str
) -> tuple[Any, int]:
    """``frame`` without the customers who did not consent to ``purpose`` (audited)."""
    book = project.consent()
    if not book.enabled or purpose is None or not len(frame):
        return frame, 0
    ids = frame["customer_id"].astype(str).tolist()
    unique = sorted(set(ids))
    allowed = set(c for c, ok in zip(unique, book.allowed(purpose, unique), strict=True) if ok)
    keep = frame["customer_id"].astype(str).isin(allowed)
    excluded = len(unique) - len(allowed)
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="consent",
        n_customers=excluded,
        query=what,
        extra={"purpose": purpose, "consent_excluded": excluded},
    )
    return frame[keep], excluded
