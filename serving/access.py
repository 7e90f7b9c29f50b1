"""Who is calling and what they may see: API keys, role visibility, tag selection, audit.

Every request is authenticated by its API key, narrowed to the tags its role may see
(catalogue and access policy, :class:`Governance`) and recorded in the audit log with
customer ids replaced by keyed hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from serving.errors import BadRequest, Forbidden, Unauthorized
from serving.keys import ApiKey

__all__ = ["ADMIN_ROLE", "Access", "AuditSink", "Caller", "Governance"]

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller."""

    name: str
    role: str


class Governance(Protocol):
    """The catalogue and the access policy, as the service needs them."""

    def catalog(self) -> Mapping[str, Mapping[str, Any]]:
        """Tag id -> JSON-ready catalogue entry, with at least ``category``."""
        ...

    def visible(self, role: str) -> frozenset[str]:
        """Tag ids the role may see (empty for an unknown role)."""
        ...

    def roles(self) -> frozenset[str]:
        """Roles the policy defines."""
        ...

    def feeds(self) -> Mapping[str, frozenset[str]]:
        """Rule or fact tag id -> the features its rule reads."""
        ...


class AuditSink(Protocol):
    """Receives one audit entry per request."""

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


class Access:
    """Authentication, the tags a caller may see, and the audit trail of every request.

    Args:
        governance: Catalogue and access policy.
        audit: Audit sink (one entry per request).
        verify_key: API key -> stored key record (``None`` when invalid).
        id_pepper: Secret mixed into the customer-id hashes of the audit log.
    """

    def __init__(
        self,
        *,
        governance: Governance,
        audit: AuditSink,
        verify_key: Callable[[str | None], ApiKey | None],
        id_pepper: bytes,
    ) -> None:
        self.governance = governance
        self.audit = audit
        self._verify_key = verify_key
        self._pepper = id_pepper
        self._visible_cache: dict[str, frozenset[str]] = {}
        self._features_cache: dict[tuple[Any, ...], frozenset[str]] = {}

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller behind an ``Authorization: Bearer KEY`` or ``X-API-Key`` header.

        Raises:
            Unauthorized: No key, or no stored key matches.
        """
        presented = headers.get("x-api-key")
        if not presented:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer":
                presented = token.strip()
        if not presented:
            raise Unauthorized(
                "Expected an API key in an 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
                "header. Got none; create one with 'tagsmith serve keys add NAME --role ROLE'."
            )
        key = self._verify_key(presented)
        if key is None:
            raise Unauthorized("Expected a valid API key. Got one that matches no stored key.")
        return Caller(name=key.name, role=key.role)

    def visible(self, role: str) -> frozenset[str]:
        """Tag ids ``role`` may see (cached per role)."""
        cached = self._visible_cache.get(role)
        if cached is None:
            cached = frozenset(self.governance.visible(role))
            self._visible_cache[role] = cached
        return cached

    def features(
        self,
        role: str,
        model_inputs: Mapping[str, Iterable[str]],
        selected: frozenset[str] | None = None,
    ) -> frozenset[str]:
        """Features ``role`` may see: those feeding a tag it may see (and was asked for).

        A rule or fact tag is fed by the features its rule reads, a model tag by its
        serving model's inputs (``model_inputs``: tag id -> inputs). A feature that
        feeds only tags the role may not see is never returned; with ``selected`` (the
        request's tags after its ``categories``/``tags`` filters) only features feeding
        those tags are.
        """
        key = (
            role,
            tuple(sorted((t, tuple(v)) for t, v in model_inputs.items())),
            None if selected is None else tuple(sorted(selected)),
        )
        cached = self._features_cache.get(key)
        if cached is None:
            visible = self.visible(role)
            if selected is not None:
                visible = visible & selected
            feeds = self.governance.feeds()
            names: set[str] = set()
            for tag_id in visible:
                names |= feeds.get(tag_id, frozenset())
                names |= set(model_inputs.get(tag_id, ()))
            cached = frozenset(names)
            if len(self._features_cache) > 64:  # model versions change: keep it bounded
                self._features_cache.clear()
            self._features_cache[key] = cached
        return cached

    def selection(
        self, caller: Caller, categories: Sequence[str] | None, tag_ids: Sequence[str] | None
    ) -> frozenset[str]:
        """The tag ids to return: visible to the role, within the requested filters.

        Raises:
            BadRequest: An unknown category or tag id was asked for.
            Forbidden: A tag the role may not see was asked for by name.
        """
        catalog = self.governance.catalog()
        allowed = self.visible(caller.role)
        selected = allowed
        if categories:
            known = {str(entry.get("category")) for entry in catalog.values()}
            unknown = sorted(set(categories) - known)
            if unknown:
                raise BadRequest(
                    f"Expected categories among {sorted(known)}. Got unknown {unknown}."
                )
            wanted = set(categories)
            selected = frozenset(t for t in selected if catalog[t].get("category") in wanted)
        if tag_ids:
            unknown = sorted(set(tag_ids) - set(catalog))
            if unknown:
                raise BadRequest(
                    f"Expected tag ids of the catalogue (see GET /catalog). Got unknown {unknown}."
                )
            denied = sorted(set(tag_ids) - allowed)
            if denied:
                raise Forbidden(
                    f"Role {caller.role!r} may not read tags {denied}: their category or "
                    "sensitivity is outside what the access policy grants this role."
                )
            selected = selected & frozenset(tag_ids)
        return selected

    def require_admin(self, caller: Caller) -> None:
        """Refuse callers whose role is not ``admin``.

        Raises:
            Forbidden: The caller's role is not ``admin``.
        """
        if caller.role != ADMIN_ROLE:
            raise Forbidden(
                f"Only the {ADMIN_ROLE!r} role may reload models. Got role {caller.role!r}."
            )

    def hash_ids(self, customer_ids: Iterable[str]) -> list[str]:
        """Keyed hashes of customer ids for the audit log (no raw ids in logs)."""
        pepper = self._pepper
        return [
            hashlib.blake2b(c.encode("utf-8"), key=pepper, digest_size=10).hexdigest()
            for c in customer_ids
        ]

    def record(
        self,
        caller: Caller,
        action: str,
        *,
        tags: Sequence[str],
        n_customers: int,
        query: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> None:
        """Audit one request."""
        self.audit.append(
            actor=caller.name,
            role=caller.role,
            action=action,
            tags=list(tags),
            n_customers=n_customers,
            query=dict(query),
            extra=dict(extra),
        )

    def denied(self, caller: Caller | None, action: str, reason: str) -> None:
        """Audit a refused request (bad key or forbidden tags)."""
        self.record(
            caller or Caller(name="anonymous", role="none"),
            action,
            tags=[],
            n_customers=0,
            query={},
            extra={"refused": reason},
        )
