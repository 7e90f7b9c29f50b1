"""What governed commands share: the caller's role, the policy, the audit log."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tags.audit import AuditLog, default_actor
from tags.policy import AccessPolicy
from tagsmith.project import Project

__all__ = ["audit_log", "policy", "require", "resolve_role", "role_option"]

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


def policy(project: Project) -> AccessPolicy:
    """The project's access policy."""
    return AccessPolicy.load(project.policy_path)


def audit_log(project: Project) -> AuditLog:
    """The project's audit log."""
    return AuditLog(project.audit_log_path)


def require(project: Project, role: str, action: str, *, query: str) -> AccessPolicy:
    """Refuse (and audit the refusal) unless ``role`` may take ``action``."""
    pol = policy(project)
    try:
        pol.require(role, action)
    except Exception as exc:
        audit_log(project).append(
            actor=default_actor(),
            role=role,
            action="denied",
            query=query,
            extra={"requested_action": action, "reason": str(exc)},
        )
        raise
    return pol
