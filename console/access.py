"""Who is asking and what they may see: every page asks a :class:`Viewer`.

A viewer is the signed-in key's name and role, resolved against the access policy on
every request: the tags it may read (none without the ``read`` action), the actions it
may take. Refusals are audited as ``denied`` with the reason, like the CLI's and the
service's; the page then says why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tags.errors import AccessDenied
from tags.policy import AccessPolicy

__all__ = ["AuditSink", "Viewer", "viewer_for"]


class AuditSink(Protocol):
    """Receives one audit entry (``serving.auditing.QueuedAudit`` writes them off-request)."""

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        tags: Sequence[str],
        n_customers: int,
        query: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> None:
        """Record one entry."""
        ...


@dataclass(frozen=True)
class Viewer:
    """A signed-in caller under the access policy.

    Attributes:
        name: The API key's name (the actor in the audit log).
        role: The key's role.
        visible: Tag ids the role may read.
        actions: Actions the role may take.
        policy: The access policy.
        catalogue: The tag catalogue.
        audit: Where entries go.
    """

    name: str
    role: str
    visible: frozenset[str]
    actions: frozenset[str]
    policy: AccessPolicy
    catalogue: Any
    audit: AuditSink

    def may(self, action: str) -> bool:
        """Whether the role may take ``action``."""
        return action in self.actions

    def require(self, action: str, *, query: Mapping[str, Any]) -> None:
        """Refuse (audited) unless the role may take ``action``.

        Raises:
            AccessDenied: The role lacks the action; the message names roles that have it.
        """
        try:
            self.policy.require(self.role, action)
        except AccessDenied as exc:
            self.denied(action, [], query, str(exc))
            raise

    def authorise(self, action: str, tags: Collection[str], *, query: Mapping[str, Any]) -> None:
        """Refuse (audited) unless the role may take ``action`` on every tag in ``tags``.

        Raises:
            AccessDenied: The action or a tag is not granted (unknown tags are refused too).
        """
        try:
            self.policy.require(self.role, action)
            if "read" not in self.actions:
                raise AccessDenied(f"Role {self.role!r} may not read tags at all.")
            self.policy.check(self.role, tags, self.catalogue)
        except AccessDenied as exc:
            self.denied(action, sorted(tags), query, str(exc))
            raise

    def denied(
        self, action: str, tags: Sequence[str], query: Mapping[str, Any], reason: str
    ) -> None:
        """Audit a refusal."""
        self.audit.append(
            actor=self.name,
            role=self.role,
            action="denied",
            tags=list(tags),
            n_customers=0,
            query=dict(query),
            extra={"requested_action": f"console.{action}", "reason": reason},
        )

    def record(
        self,
        action: str,
        *,
        tags: Collection[str] = (),
        n_customers: int = 0,
        query: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit a completed read or action (``console.<action>``)."""
        self.audit.append(
            actor=self.name,
            role=self.role,
            action=f"console.{action}",
            tags=sorted(tags),
            n_customers=n_customers,
            query=dict(query or {}),
            extra=dict(extra or {}),
        )


def viewer_for(
    name: str, role: str, policy: AccessPolicy, catalogue: Any, audit: AuditSink
) -> Viewer:
    """The viewer of a key's role (a role outside the policy sees and may do nothing)."""
    rp = policy.roles.get(role)
    if rp is None:
        return Viewer(name, role, frozenset(), frozenset(), policy, catalogue, audit)
    actions = frozenset(rp.actions)
    visible = frozenset(policy.visible(role, catalogue)) if "read" in actions else frozenset()
    return Viewer(name, role, visible, actions, policy, catalogue, audit)
