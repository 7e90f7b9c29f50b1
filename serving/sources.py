"""The runtime's sources on a project's real stores.

* :class:`TagStoreSnapshotSource`: the newest tag snapshot of the tag store and the
  feature snapshot of the same as-of date;
* :class:`PolicyGovernance`: the catalogue and the access policy;
* :class:`LiveOnlineScorer`: posted facts -> features -> rule tags -> champions' scores
  through the live fast path (:class:`scoring.live.LiveScorer`, the batch code on
  arrays), what the service's ``POST /score`` runs (``serving.runtime.OnlineScorer``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from explain.visibility import rule_features
from serving.rendering import Snapshot
from tags.errors import TagsError
from tags.policy import AccessPolicy, tag_infos
from tags.store import TagStore
from tags.store_governance import erasures

__all__ = [
    "JsonAudit",
    "LiveOnlineScorer",
    "PolicyGovernance",
    "TagStoreSnapshotSource",
]

log = logging.getLogger(__name__)

FeatureLoader = Callable[[pd.Timestamp], pd.DataFrame]


class TagStoreSnapshotSource:
    """The newest snapshot of a tag store, with the features it was computed from.

    The watcher calls :meth:`marker` every few seconds; it only opens the database when
    the file changed since the last look (a stat call otherwise), so an idle service
    never holds the file a tagging run wants to write.

    Args:
        store: The tag store.
        features: as_of -> feature frame of that date (one row per customer).
    """

    def __init__(self, store: TagStore, features: FeatureLoader) -> None:
        self.store = store
        self.features = features
        self._stat: tuple[int, int, int] | None = None
        self._marker: str | None = None

    def marker(self) -> str | None:
        """Id of the run that wrote the newest snapshot (``None``: no snapshot yet)."""
        try:
            st = self.store.path.stat()
        except FileNotFoundError:
            self._stat, self._marker = None, None
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stat:
            if self.store.latest_as_of() is None:
                self._marker = None
            else:
                # An erasure rewrites the snapshot without a new run: it counts too.
                erased = erasures(self.store)
                run_id = self.store.run_info().run_id
                self._marker = f"{run_id}+erasure{erased}" if erased else run_id
            self._stat = stamp
        return self._marker

    def load(self) -> Snapshot | None:
        """The newest snapshot and its features."""
        as_of = self.store.latest_as_of()
        if as_of is None:
            return None
        info = self.store.run_info(as_of)
        tags = self.store.snapshot(as_of)
        features = self.features(as_of)
        recorded = (info.meta or {}).get("thresholds") or {}
        thresholds = {
            str(tag): {str(k): float("nan") if v is None else float(v) for k, v in numbers.items()}
            for tag, numbers in recorded.items()
        }
        return Snapshot(
            tags=tags, features=features, as_of=as_of, run_id=info.run_id, thresholds=thresholds
        )


def _entry(tag: Any) -> dict[str, Any]:
    """JSON-ready catalogue entry of a tag definition (what ``GET /catalog`` shows)."""
    dump = getattr(tag, "model_dump", None)
    data: dict[str, Any] = dump(mode="json", by_alias=True) if callable(dump) else dict(vars(tag))
    data.pop("rule", None)  # rule internals are for the catalogue's editors, not callers
    data.pop("id", None)
    return data


class PolicyGovernance:
    """Catalogue + access policy (``serving.runtime.Governance``).

    A role sees what the policy grants it, and only if it may ``read`` at all.
    """

    def __init__(self, catalogue: Any, policy: AccessPolicy) -> None:
        self.catalogue = catalogue
        self.policy = policy
        self._catalog = {t.id: _entry(t) for t in tag_infos(catalogue)}
        # A compiled catalogue says which features each rule reads; a plain mapping of
        # definitions (tests, tools) has no rules, so its tags reveal no feature.
        compiled = callable(getattr(catalogue, "compiled", None))
        self._feeds = {
            t.id: frozenset(rule_features(catalogue, t.id) if compiled else ())
            for t in tag_infos(catalogue)
            if getattr(t, "source", "rule") != "model"
        }

    def feeds(self) -> Mapping[str, frozenset[str]]:
        """Rule or fact tag id -> the features its rule reads."""
        return self._feeds

    def catalog(self) -> Mapping[str, Mapping[str, Any]]:
        """Tag id -> catalogue entry."""
        return self._catalog

    def visible(self, role: str) -> frozenset[str]:
        """Tag ids ``role`` may read (empty for unknown roles and roles without read)."""
        if role not in self.policy.roles or "read" not in self.policy.roles[role].actions:
            return frozenset()
        return frozenset(self.policy.visible(role, self.catalogue))

    def roles(self) -> frozenset[str]:
        """Roles of the policy."""
        return frozenset(self.policy.roles)


class JsonAudit:
    """Adapts the runtime's audit entries to :class:`tags.audit.AuditLog` (query as JSON)."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def append(self, **entry: Any) -> Any:
        """Append with the query serialised as compact JSON text."""
        return self.log.append(**_with_query_text(entry))

    def append_many(self, entries: Sequence[Mapping[str, Any]]) -> Any:
        """Append several entries in order under one lock and one fsync of the log."""
        return self.log.append_many([_with_query_text(e) for e in entries])


def _with_query_text(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with its query serialised as compact, key-sorted JSON text."""
    out = dict(entry)
    query = out.pop("query", None)
    out["query"] = json.dumps(query, sort_keys=True, separators=(",", ":")) if query else None
    return out


class LiveOnlineScorer:
    """One customer's posted facts through the live fast path
    (:class:`scoring.live.LiveScorer`, built once: spec, catalogue type checks); a
    request codes its records and builds the event index of that one customer only.
    """

    def __init__(self, live: Any) -> None:
        self.live = live

    def score(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(one-row feature frame, long rule-tag table) of the posted customer.

        Raises:
            FeaturesError: The facts break the contract.
            TagsError: The customer signed up at or after ``as_of``, or a rule fails.
        """
        result = self.score_live(customer, events, as_of=as_of)
        return result.features, result.rule_tags

    def warm(self, models: Mapping[str, Any]) -> None:
        """Score a made-up customer with ``models`` once (``LiveScorer.warm``)."""
        self.live.warm(models)

    def score_live(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
        models: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> Any:
        """The posted customer's :class:`scoring.live.LiveResult` (features and rule tags
        as arrays, and each of ``models``' scores): what ``POST /score`` answers from.
        ``thresholds`` pins population aggregates (a batch run's, per tag).

        Raises:
            FeaturesError: The facts break the contract.
            TagsError: The customer signed up at or after ``as_of``, or a rule fails.
        """
        record = dict(customer)
        result = self.live.score(
            [record],
            [dict(e) for e in events],
            as_of=as_of,
            models=models or {},
            thresholds=thresholds,
        )
        if not len(result.columns):
            raise TagsError(
                f"Expected a customer who signed up before as_of {as_of.isoformat()}. "
                f"Got signup_at {pd.Timestamp(record['signup_at']).isoformat()}."
            )
        return result
