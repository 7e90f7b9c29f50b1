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
from tagsmith.project import Project

if TYPE_CHECKING:
    from tags.access import TagReader
    from tags.policy import AccessPolicy

__all__ = ["lint_findings", "make_reader", "require", "resolve_role", "role_option"]

F = TypeVar("F", bound=Callable[..., Any])


def role_option(func: F) -> F:
    """``--role``: the caller's role (default: TAGSMITH_ROLE, then ``access.default_role``)."""
    return click.option(
        "--role",
        default=None,
        metavar="ROLE",
        help="Role you act under (default: $TAGSMITH_ROLE, then access.default_role).",
    )(func)


def resolve_role(project: Project, role: str | None) -> str:
    """The caller's role: the option, else ``TAGSMITH_ROLE``, else the config default."""
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
