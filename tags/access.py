"""Governed reads of the tag store: every read checks the policy and is audited.

:class:`TagReader` is the one door to tag values for callers outside the tagging run
(the CLI, audiences, the HTTP service). It resolves the caller's role to the tags it
may see, refuses explicit requests for anything else (and records the refusal), and
appends one audit entry per read with the tags and the number of customers returned.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from tags.audit import AuditLog, default_actor
from tags.errors import AccessDenied
from tags.policy import AccessPolicy, tag_infos
from tags.store import TagStore

__all__ = ["TagReader"]


class TagReader:
    """Reads of one caller (actor and role) under the access policy.

    Args:
        store: The tag store.
        catalogue: The tag catalogue (a ``tags.catalogue.Catalogue`` or any mapping /
            iterable of definitions with ``id``, ``category``, ``sensitivity``).
        policy: The access policy.
        audit: The audit log every read is written to.
        role: The caller's role.
        actor: The caller (default: ``TAGSMITH_USER`` or the login name).
    """

    def __init__(
        self,
        store: TagStore,
        catalogue: Any,
        policy: AccessPolicy,
        audit: AuditLog,
        *,
        role: str,
        actor: str | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.policy = policy
        self.audit = audit
        self.role = role
        self.actor = actor or default_actor()
        self.policy.role(role)  # an unknown role is refused up front

    # -- policy ------------------------------------------------------------------------

    def visible(self) -> set[str]:
        """Tag ids this caller may see."""
        return self.policy.visible(self.role, self.catalogue)

    def definitions(self) -> dict[str, Any]:
        """Catalogue definitions of the visible tags, by id."""
        seen = self.visible()
        return {t.id: t for t in tag_infos(self.catalogue) if t.id in seen}

    def authorise(self, action: str, requested: Collection[str] | None, query: str) -> list[str]:
        """The tags ``action`` may touch: ``requested`` if all are allowed, else refused.

        With ``requested`` None, every visible tag. A refusal is audited (action
        ``denied``) before :class:`AccessDenied` propagates.
        """
        try:
            self.policy.require(self.role, action)
            if requested:
                self.policy.check(self.role, requested, self.catalogue)
                return sorted(set(requested))
            return sorted(self.visible())
        except AccessDenied as exc:
            self.audit.append(
                actor=self.actor,
                role=self.role,
                action="denied",
                tags=sorted(requested or ()),
                query=query,
                extra={"requested_action": action, "reason": str(exc)},
            )
            raise

    def record(
        self,
        action: str,
        *,
        tags: Collection[str],
        n_customers: int | None,
        query: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Append this caller's audit entry for a completed read."""
        self.audit.append(
            actor=self.actor,
            role=self.role,
            action=action,
            tags=tags,
            n_customers=n_customers,
            query=query,
            extra=extra,
        )

    # -- reads -------------------------------------------------------------------------

    def snapshot(
        self,
        as_of: Any = None,
        *,
        tags: Collection[str] | None = None,
        customers: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """The visible part of the snapshot current at ``as_of``."""
        query = f"snapshot as_of={as_of or 'latest'}"
        allowed = self.authorise("read", tags, query)
        df = self.store.snapshot(as_of, tags=allowed, customers=customers)
        self.record("read", tags=allowed, n_customers=df["customer_id"].nunique(), query=query)
        return df

    def export(
        self, out: Path, as_of: Any = None, *, tags: Collection[str] | None = None
    ) -> tuple[int, int]:
        """Write the visible part of a snapshot to ``out``; returns (rows, customers)."""
        query = f"export as_of={as_of or 'latest'} out={out}"
        allowed = self.authorise("export", tags, query)
        rows, customers = self.store.export(out, as_of, tags=allowed)
        self.record(
            "export", tags=allowed, n_customers=customers, query=query, extra={"rows": rows}
        )
        return rows, customers

    def history(self, customer_id: str, *, tags: Collection[str] | None = None) -> pd.DataFrame:
        """One customer's visible tag values over time."""
        query = f"history {customer_id}"
        allowed = self.authorise("read", tags, query)
        df = self.store.history(customer_id, tags=allowed)
        self.record("read", tags=allowed, n_customers=1 if len(df) else 0, query=query)
        return df

    def diff(self, from_as_of: Any, to_as_of: Any, tag_id: str | None = None) -> pd.DataFrame:
        """Who entered, left or changed each visible tag between two snapshots."""
        query = f"diff from={from_as_of} to={to_as_of} tag={tag_id or '*'}"
        allowed = self.authorise("read", [tag_id] if tag_id else None, query)
        df = self.store.diff(from_as_of, to_as_of, tags=allowed)
        self.record("read", tags=allowed, n_customers=df["customer_id"].nunique(), query=query)
        return df

    def transitions(self, tag_id: str, *, customer_id: str | None = None) -> pd.DataFrame:
        """Every change of one tag between consecutive snapshots, with its date."""
        query = f"transitions tag={tag_id} customer={customer_id or '*'}"
        allowed = self.authorise("read", [tag_id], query)
        df = self.store.transitions(allowed[0], customer_id=customer_id)
        self.record("read", tags=allowed, n_customers=df["customer_id"].nunique(), query=query)
        return df

    def coverage(self, as_of: Any = None, *, threshold: float = 0.05) -> pd.DataFrame:
        """Coverage of the visible tags (aggregates: no customer leaves)."""
        query = f"coverage as_of={as_of or 'latest'}"
        allowed = self.authorise("read", None, query)
        df = self.store.coverage(
            as_of, threshold=threshold, tags=allowed, expected_tags=self._active(allowed)
        )
        self.record("report", tags=allowed, n_customers=None, query=query)
        return df

    def _active(self, allowed: Collection[str]) -> list[str]:
        # Active fact and rule tags must always have customers. Model tags only exist
        # once a champion is promoted; after that, losing them is caught because they
        # were in the previous snapshot.
        return sorted(
            t.id
            for t in tag_infos(self.catalogue)
            if t.id in allowed
            and getattr(t, "status", "active") == "active"
            and getattr(t, "source", "rule") != "model"
        )
