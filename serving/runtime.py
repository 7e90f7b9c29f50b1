"""The tag service's engine, free of HTTP: state held in memory, swapped atomically.

Everything a request reads lives in one immutable :class:`ServingState` (the latest tag
snapshot indexed by customer, the champion models' scores of every customer of the feature
snapshot, the loaded champion models). A request takes the current state once, with a
single attribute read, and works on it; a reload (new champion, new tagging run) builds
a complete new state on the side and publishes it with a single reference assignment.
So a request never sees half a swap, and a failed reload leaves the old state serving.

Sources of state are small protocols (:class:`ModelSource`, :class:`SnapshotSource`,
:class:`Governance`, :class:`AuditSink`) so the engine is tested with in-memory fakes
and served with the project's tag store, MLflow registry, catalogue, policy and audit log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.errors import FeaturesError
from serving.errors import BadRequest, Forbidden, ModelLoadError, Unauthorized
from serving.keys import ApiKey
from tags.errors import TagsError

__all__ = [
    "AuditSink",
    "Caller",
    "Governance",
    "ModelSource",
    "ModelStatus",
    "ReloadResult",
    "ServedModel",
    "ServingRuntime",
    "ServingState",
    "Snapshot",
    "SnapshotIndex",
    "SnapshotSource",
]

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"


# --------------------------------------------------------------------------- protocols
class ServedModel(Protocol):
    """A loaded, smoke-tested model that produces one predicted tag."""

    @property
    def name(self) -> str:
        """Registered model name."""
        ...

    @property
    def version(self) -> str:
        """Registered model version."""
        ...

    @property
    def tag_id(self) -> str:
        """The tag it produces."""
        ...

    @property
    def loaded_at(self) -> str:
        """ISO time it was loaded."""
        ...

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for ``features`` (one row per feature row)."""
        ...

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated scores for the rows of a prepared matrix."""
        ...

    def label(self, scores: np.ndarray) -> list[str]:
        """The tag value (band or tier) of each score."""
        ...


class ModelSource(Protocol):
    """Where champion models come from (the MLflow registry in production)."""

    def champion_version(self, name: str) -> str | None:
        """Version behind the serving alias of ``name``, or ``None`` when there is none."""
        ...

    def load(self, name: str, version: str) -> ServedModel:
        """Load and smoke-test one version.

        Raises:
            ModelLoadError: It cannot be loaded or fails the smoke test.
        """
        ...


@dataclass(frozen=True)
class Snapshot:
    """A tag snapshot and the feature snapshot it was computed from.

    Attributes:
        tags: Long tag table (customer_id, tag_id, value, score, source, version, as_of).
        features: Feature frame, one row per customer (``customer_id`` column first).
        as_of: The snapshot's as-of timestamp.
        run_id: The tagging run that wrote it.
    """

    tags: pd.DataFrame
    features: pd.DataFrame
    as_of: pd.Timestamp
    run_id: str


class SnapshotSource(Protocol):
    """Where the latest tag and feature snapshots come from (the tag store)."""

    def marker(self) -> str | None:
        """A token that changes whenever a new tagging run lands (``None``: none yet)."""
        ...

    def load(self) -> Snapshot | None:
        """The latest snapshot, or ``None`` when no tagging run has landed."""
        ...


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


# --------------------------------------------------------------------------- state
_ROW_FIELDS = ("tag_id", "value", "score", "source", "version")


def _json_literals(values: pd.Series) -> pd.Series:
    """JSON text of each string, escaped once per distinct value (tag values repeat)."""
    codes, uniques = pd.factorize(values.astype(str), sort=False)
    literals = np.array([json.dumps(str(u), ensure_ascii=False) for u in uniques], dtype=object)
    return pd.Series(
        literals[codes] if len(uniques) else np.array([], dtype=object), index=values.index
    )


def _score_literal(score: float) -> str:
    return repr(round(score, 6)) if math.isfinite(score) else "null"


@dataclass(frozen=True)
class SnapshotIndex:
    """A snapshot prepared for lookups: each customer's tag rows as ready JSON text.

    Serialising a row costs more than serving it, so every stored row is rendered to
    JSON once, when the snapshot is loaded; a request joins the texts it returns.

    Attributes:
        as_of: ISO as-of of the snapshot.
        run_id: Tagging run id.
        rows: customer_id -> ((tag_id, row JSON text), ...), never mutated.
        positions: customer_id -> row of ``features``.
        features: The feature frame (kept to prepare matrices of new models).
    """

    as_of: str
    run_id: str
    rows: Mapping[str, tuple[tuple[str, str], ...]]
    positions: Mapping[str, int]
    features: pd.DataFrame

    @classmethod
    def build(cls, snapshot: Snapshot) -> SnapshotIndex:
        """Index ``snapshot``: vectorised rendering, then one pass to group by customer."""
        as_of = _iso(snapshot.as_of)
        tags = snapshot.tags.reset_index(drop=True)
        rows: dict[str, tuple[tuple[str, str], ...]] = {}
        if len(tags):
            scores = pd.to_numeric(tags["score"], errors="coerce").to_numpy(dtype=np.float64)
            score_text = np.full(len(tags), "null", dtype=object)
            finite = np.isfinite(scores)
            score_text[finite] = [repr(v) for v in np.round(scores[finite], 6).tolist()]
            text = (
                '{"tag_id":'
                + _json_literals(tags["tag_id"])
                + ',"value":'
                + _json_literals(tags["value"])
                + ',"score":'
                + pd.Series(score_text, index=tags.index)
                + ',"source":'
                + _json_literals(tags["source"])
                + ',"version":'
                + _json_literals(tags["version"])
                + ',"as_of":'
                + json.dumps(as_of)
                + "}"
            )
            ids = tags["customer_id"].astype(str).to_numpy(dtype=object)
            order = np.argsort(ids, kind="stable")
            ids_sorted = ids[order]
            tag_ids = tags["tag_id"].astype(str).to_numpy(dtype=object)[order]
            texts = text.to_numpy(dtype=object)[order]
            bounds = np.flatnonzero(ids_sorted[1:] != ids_sorted[:-1]) + 1
            starts = [0, *bounds.tolist()]
            stops = [*bounds.tolist(), len(ids_sorted)]
            for lo, hi in zip(starts, stops, strict=True):
                rows[ids_sorted[lo]] = tuple(zip(tag_ids[lo:hi], texts[lo:hi], strict=True))
        features = snapshot.features.reset_index(drop=True)
        positions = {str(c): i for i, c in enumerate(features["customer_id"].astype(str))}
        return cls(
            as_of=as_of,
            run_id=snapshot.run_id,
            rows=rows,
            positions=positions,
            features=features,
        )

    def knows(self, customer_id: str) -> bool:
        """Whether the customer is in the tag or feature snapshot."""
        return customer_id in self.positions or customer_id in self.rows


@dataclass(frozen=True)
class LiveModel:
    """A champion model with its scores of every customer of the current feature snapshot.

    Scores are a pure function of (model version, feature snapshot), and both change
    only by a swap, so they are computed once per swap, vectorised, and a request
    looks them up (``POST /score`` predicts on its own freshly prepared row).
    """

    model: ServedModel
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def build(cls, model: ServedModel, features: pd.DataFrame | None) -> LiveModel:
        """Score every row of ``features`` (one ``Booster.predict`` call).

        Raises:
            ModelLoadError: A score is not a finite number.
        """
        if features is None or not len(features):
            return cls(model=model, scores=np.empty(0), labels=np.empty(0, dtype=object))
        scores = np.asarray(model.predict(model.prepare(features)), dtype=np.float64)
        if not np.all(np.isfinite(scores)):
            bad = int((~np.isfinite(scores)).sum())
            raise ModelLoadError(
                f"Expected finite scores from {model.name} version {model.version} on "
                f"the current feature snapshot. Got {bad} that are not, e.g. "
                f"{scores[~np.isfinite(scores)][:3].tolist()}."
            )
        return cls(model=model, scores=scores, labels=np.asarray(model.label(scores), dtype=object))


@dataclass(frozen=True)
class ModelStatus:
    """What ``GET /models`` reports for one registered model."""

    name: str
    tag_id: str
    serving_version: str | None = None
    loaded_at: str | None = None
    last_check_at: str | None = None
    last_result: str = "not checked"
    last_error: str | None = None
    candidate_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "tag_id": self.tag_id,
            "serving_version": self.serving_version,
            "loaded_at": self.loaded_at,
            "last_check_at": self.last_check_at,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "candidate_version": self.candidate_version,
        }


@dataclass(frozen=True)
class ServingState:
    """Everything a request reads, immutable; replaced whole on reload."""

    snapshot: SnapshotIndex | None
    models: Mapping[str, LiveModel]
    status: Mapping[str, ModelStatus]
    snapshot_marker: str | None = None
    snapshot_error: str | None = None


@dataclass(frozen=True)
class ReloadResult:
    """Outcome of one reload pass (JSON-ready through :meth:`to_json`)."""

    snapshot: str
    models: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"snapshot": self.snapshot, "models": dict(self.models)}


@dataclass(frozen=True)
class Caller:
    """An authenticated caller."""

    name: str
    role: str


def _iso(ts: Any) -> str:
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.isoformat()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- runtime
class ServingRuntime:
    """Serves tags from in-memory state; reloads it in the background.

    Args:
        models: Registered model name -> the tag id it produces.
        model_source: Champion lookup and loading.
        snapshot_source: Latest tag + feature snapshots.
        governance: Catalogue and access policy.
        audit: Audit sink (one entry per request).
        verify_key: API key -> stored key record (``None`` when invalid).
        id_pepper: Secret mixed into the customer-id hashes of the audit log.
        watch_interval_s: Seconds between checks of aliases and tag store (0: never).
        online_scorer: Turns one customer's facts into features and rule tags for
            ``POST /score`` (``None``: the endpoint answers 400).
    """

    def __init__(
        self,
        *,
        models: Mapping[str, str],
        model_source: ModelSource,
        snapshot_source: SnapshotSource,
        governance: Governance,
        audit: AuditSink,
        verify_key: Callable[[str | None], ApiKey | None],
        id_pepper: bytes,
        watch_interval_s: float = 0.0,
        online_scorer: OnlineScorer | None = None,
    ) -> None:
        self.model_tags = dict(models)
        self.model_source = model_source
        self.snapshot_source = snapshot_source
        self.governance = governance
        self.audit = audit
        self._verify_key = verify_key
        self._pepper = id_pepper
        self.watch_interval_s = watch_interval_s
        self.online_scorer = online_scorer
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._visible_cache: dict[str, frozenset[str]] = {}
        self.state = ServingState(
            snapshot=None,
            models={},
            status={n: ModelStatus(name=n, tag_id=t) for n, t in self.model_tags.items()},
        )

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> ReloadResult:
        """Load everything once (synchronously), then start the watcher thread."""
        result = self.reload(force=True)
        if self.watch_interval_s > 0 and self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="tagsmith-reload-watcher", daemon=True
            )
            self._watcher.start()
        return result

    def stop(self) -> None:
        """Stop the watcher thread (waits for a reload in progress)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
            self._watcher = None

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_interval_s):
            try:
                self.reload()
            except Exception:  # the watcher must outlive any one failed pass
                log.exception("Background reload failed; the previous state keeps serving")

    # ----------------------------------------------------------------- reloads
    def reload(self, *, force: bool = False) -> ReloadResult:
        """Reload what changed (or everything with ``force``); swap atomically.

        Safe to call from any thread; passes are serialised. Never raises for a model
        or snapshot that fails to load: the failure is recorded in the state's status
        and the previous model or snapshot keeps serving.
        """
        with self._reload_lock:
            state = self.state
            snap_note, state = self._reload_snapshot(state, force=force)
            model_notes: dict[str, str] = {}
            for name in self.model_tags:
                note, state = self._reload_model(state, name, force=force)
                model_notes[name] = note
            self.state = state  # the one publication: a single reference assignment
            return ReloadResult(snapshot=snap_note, models=model_notes)

    def _reload_snapshot(self, state: ServingState, *, force: bool) -> tuple[str, ServingState]:
        try:
            marker = self.snapshot_source.marker()
        except Exception as exc:
            return self._snapshot_failed(state, exc)
        if marker is None:
            return "no tagging run yet", replace(state, snapshot_marker=None)
        if marker == state.snapshot_marker and not force and state.snapshot is not None:
            return "unchanged", state
        try:
            snapshot = self.snapshot_source.load()
            if snapshot is None:
                return "no tagging run yet", replace(state, snapshot_marker=None)
            index = SnapshotIndex.build(snapshot)
            models = {
                name: LiveModel.build(live.model, index.features)
                for name, live in state.models.items()
            }
        except Exception as exc:
            return self._snapshot_failed(state, exc)
        new_state = replace(
            state, snapshot=index, models=models, snapshot_marker=marker, snapshot_error=None
        )
        return f"loaded run {index.run_id} (as of {index.as_of})", new_state

    @staticmethod
    def _snapshot_failed(state: ServingState, exc: Exception) -> tuple[str, ServingState]:
        log.exception("Loading the latest tag snapshot failed; keeping the previous one")
        message = f"{type(exc).__name__}: {exc}"
        return f"failed: {message}", replace(state, snapshot_error=message)

    def _reload_model(
        self, state: ServingState, name: str, *, force: bool
    ) -> tuple[str, ServingState]:
        status = state.status[name]
        checked = _now()
        try:
            version = self.model_source.champion_version(name)
        except Exception as exc:
            message = f"registry lookup failed: {type(exc).__name__}: {exc}"
            new_status = replace(
                status, last_check_at=checked, last_result="failed", last_error=message
            )
            return message, replace(state, status={**state.status, name: new_status})
        if version is None:
            # No champion: stop serving predictions of a model that was demoted.
            new_status = replace(
                status,
                serving_version=None,
                loaded_at=None,
                last_check_at=checked,
                last_result="no champion",
                last_error=None,
                candidate_version=None,
            )
            models = {k: v for k, v in state.models.items() if k != name}
            return "no champion", replace(
                state, models=models, status={**state.status, name: new_status}
            )
        if version == status.serving_version and not force and name in state.models:
            new_status = replace(status, last_check_at=checked)
            return "unchanged", replace(state, status={**state.status, name: new_status})
        try:
            model = self.model_source.load(name, version)
            live = self._make_live(model, state.snapshot)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning("Model %s version %s was not swapped in: %s", name, version, message)
            new_status = replace(
                status,
                last_check_at=checked,
                last_result="failed",
                last_error=message,
                candidate_version=version,
            )
            return f"failed: {message}", replace(state, status={**state.status, name: new_status})
        new_status = replace(
            status,
            serving_version=model.version,
            loaded_at=model.loaded_at,
            last_check_at=checked,
            last_result="ok",
            last_error=None,
            candidate_version=None,
        )
        return f"serving version {model.version}", replace(
            state,
            models={**state.models, name: live},
            status={**state.status, name: new_status},
        )

    @staticmethod
    def _make_live(model: ServedModel, snapshot: SnapshotIndex | None) -> LiveModel:
        # Smoke test on the data it will serve: every score must be a finite number.
        return LiveModel.build(model, snapshot.features if snapshot is not None else None)

    # ----------------------------------------------------------------- auth
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

    # ----------------------------------------------------------------- reads
    def tags(
        self,
        caller: Caller,
        customer_ids: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        tag_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Rule and predicted tags of each customer, filtered for the caller.

        The parsed form of :meth:`tags_json` (same checks, same audit entry).
        """
        parsed: dict[str, Any] = json.loads(
            self.tags_json(caller, customer_ids, categories=categories, tag_ids=tag_ids)
        )
        return parsed

    def tags_json(
        self,
        caller: Caller,
        customer_ids: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        tag_ids: Sequence[str] | None = None,
    ) -> bytes:
        """JSON answer of ``POST /tags``: per customer, rule and predicted tags.

        Stored rows are joined from their precomputed JSON; predicted rows are scored
        now by the serving champion on the customer's prepared input row. Unknown ids
        are reported per id (``found: false``) in ``results`` and in ``unknown_ids``.

        Raises:
            BadRequest: Unknown categories or tag ids.
            Forbidden: Named tags the role may not see.
        """
        selected = self.selection(caller, categories, tag_ids)
        state = self.state  # one read: the whole request sees one consistent state
        snap = state.snapshot
        live = [
            lm
            for lm in state.models.values()
            if lm.model.tag_id in selected and snap is not None and len(lm.scores)
        ]
        static_tags = selected - {lm.model.tag_id for lm in live}
        parts: list[list[str] | None] = []  # per customer: its tag texts (None: unknown)
        unknown: list[str] = []
        found_pos: list[int] = []
        found_slot: list[int] = []
        returned: set[str] = set()
        for cid in customer_ids:
            if snap is None or not snap.knows(cid):
                unknown.append(cid)
                parts.append(None)
                continue
            texts = []
            for tid, text in snap.rows.get(cid, ()):
                if tid in static_tags:
                    texts.append(text)
                    returned.add(tid)
            parts.append(texts)
            pos = snap.positions.get(cid)
            if pos is not None and live:
                found_pos.append(pos)
                found_slot.append(len(parts) - 1)
        model_versions: dict[str, str] = {}
        if found_pos and snap is not None:
            idx = np.asarray(found_pos, dtype=np.intp)
            as_of_text = json.dumps(snap.as_of)
            for lm in live:
                model = lm.model
                scores = lm.scores[idx]
                labels = lm.labels[idx].tolist()
                model_versions[model.name] = model.version
                returned.add(model.tag_id)
                head = '{"tag_id":' + json.dumps(model.tag_id) + ',"value":'
                tail = (
                    ',"source":"model","version":'
                    + json.dumps(f"{model.name}/{model.version}")
                    + ',"as_of":'
                    + as_of_text
                    + "}"
                )
                label_text = {v: json.dumps(v) for v in set(labels)}
                for slot, score, label in zip(found_slot, scores.tolist(), labels, strict=True):
                    texts_of = parts[slot]
                    assert texts_of is not None
                    texts_of.append(
                        head + label_text[label] + ',"score":' + _score_literal(score) + tail
                    )
        results = []
        for cid, texts_or_none in zip(customer_ids, parts, strict=True):
            cid_text = json.dumps(cid)
            if texts_or_none is None:
                results.append(
                    '{"customer_id":' + cid_text + ',"found":false,"error":"unknown customer id"}'
                )
            else:
                results.append(
                    '{"customer_id":'
                    + cid_text
                    + ',"found":true,"tags":['
                    + ",".join(texts_or_none)
                    + "]}"
                )
        self._audit(
            caller,
            "serve.tags",
            tags=sorted(returned),
            n_customers=len(customer_ids) - len(unknown),
            query={
                "customer_id_hashes": self.hash_ids(customer_ids),
                "categories": list(categories or []),
                "tags": list(tag_ids or []),
            },
            extra={"unknown": len(unknown), "model_versions": model_versions},
        )
        head_text = json.dumps(
            {
                "as_of": snap.as_of if snap else None,
                "run_id": snap.run_id if snap else None,
                "model_versions": model_versions,
            }
        )
        return (
            head_text[:-1]
            + ',"results":['
            + ",".join(results)
            + "],"
            + '"unknown_ids":'
            + json.dumps(unknown)
            + "}"
        ).encode("utf-8")

    def catalog(self, caller: Caller) -> dict[str, Any]:
        """The catalogue entries the caller may see."""
        allowed = self.visible(caller.role)
        catalog = self.governance.catalog()
        entries = [dict(catalog[t]) | {"tag_id": t} for t in sorted(allowed) if t in catalog]
        self._audit(
            caller,
            "serve.catalog",
            tags=[e["tag_id"] for e in entries],
            n_customers=0,
            query={},
            extra={},
        )
        return {"role": caller.role, "tags": entries}

    def models(self, caller: Caller) -> dict[str, Any]:
        """Serving versions, load times and the last reload result of each model."""
        state = self.state
        self._audit(caller, "serve.models", tags=[], n_customers=0, query={}, extra={})
        snap = state.snapshot
        return {
            "models": [state.status[n].to_json() for n in self.model_tags],
            "snapshot": {
                "as_of": snap.as_of if snap else None,
                "run_id": snap.run_id if snap else None,
                "customers": len(snap.positions) if snap else 0,
                "last_error": state.snapshot_error,
            },
            "watch_interval_s": self.watch_interval_s,
        }

    def admin_reload(self, caller: Caller) -> dict[str, Any]:
        """Check aliases and the tag store now and swap in what changed (admin only).

        Raises:
            Forbidden: The caller's role is not ``admin``.
        """
        if caller.role != ADMIN_ROLE:
            raise Forbidden(
                f"Only the {ADMIN_ROLE!r} role may reload models. Got role {caller.role!r}."
            )
        started = time.perf_counter()
        result = self.reload()
        self._audit(
            caller,
            "serve.reload",
            tags=[],
            n_customers=0,
            query={},
            extra={"result": result.to_json()},
        )
        out = self.models(caller)
        out["reload"] = result.to_json() | {"seconds": round(time.perf_counter() - started, 3)}
        return out

    def score(
        self,
        caller: Caller,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
        categories: Sequence[str] | None = None,
        tag_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Features, rule tags and predicted tags of one customer from posted facts.

        Raises:
            BadRequest: The facts break the fact contract, or online scoring is off.
            Forbidden: Named tags the role may not see.
        """
        if self.online_scorer is None:
            raise BadRequest(
                "Expected online scoring to be configured (a catalogue and a feature spec). "
                "Got a service without them."
            )
        selected = self.selection(caller, categories, tag_ids)
        state = self.state
        try:
            features, rule_tags = self.online_scorer.score(customer, events, as_of=as_of)
        except (FeaturesError, TagsError) as exc:  # their messages name the field
            raise BadRequest(f"The posted facts cannot be scored: {exc}") from exc
        cid = str(customer.get("customer_id"))
        as_of_iso = _iso(as_of)
        rows: list[dict[str, Any]] = []
        if len(rule_tags):
            index = SnapshotIndex.build(
                Snapshot(tags=rule_tags, features=features, as_of=as_of, run_id="online")
            )
            rows = [json.loads(text) for tid, text in index.rows.get(cid, ()) if tid in selected]
        model_versions: dict[str, str | None] = {}
        for name, lm in state.models.items():
            if lm.model.tag_id not in selected or not len(features):
                continue
            scores = lm.model.predict(lm.model.prepare(features))
            label = lm.model.label(scores)[0]
            model_versions[name] = lm.model.version
            rows.append(
                {
                    "tag_id": lm.model.tag_id,
                    "value": label,
                    "score": round(float(scores[0]), 6),
                    "source": "model",
                    "version": f"{lm.model.name}/{lm.model.version}",
                    "as_of": as_of_iso,
                }
            )
        self._audit(
            caller,
            "serve.score",
            tags=sorted({r["tag_id"] for r in rows}),
            n_customers=1,
            query={"customer_id_hashes": self.hash_ids([cid]), "events": len(events)},
            extra={"model_versions": model_versions},
        )
        feature_row = _json_row(features.iloc[0]) if len(features) else {}
        return {
            "customer_id": cid,
            "as_of": as_of_iso,
            "model_versions": model_versions,
            "features": feature_row,
            "tags": rows,
        }

    # ----------------------------------------------------------------- audit
    def hash_ids(self, customer_ids: Iterable[str]) -> list[str]:
        """Keyed hashes of customer ids for the audit log (no raw ids in logs)."""
        pepper = self._pepper
        return [
            hashlib.blake2b(c.encode("utf-8"), key=pepper, digest_size=10).hexdigest()
            for c in customer_ids
        ]

    def audit_denied(self, caller: Caller | None, action: str, reason: str) -> None:
        """Audit a refused request (bad key or forbidden tags)."""
        self._audit(
            caller or Caller(name="anonymous", role="none"),
            action,
            tags=[],
            n_customers=0,
            query={},
            extra={"refused": reason},
        )

    def _audit(
        self,
        caller: Caller,
        action: str,
        *,
        tags: Sequence[str],
        n_customers: int,
        query: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> None:
        self.audit.append(
            actor=caller.name,
            role=caller.role,
            action=action,
            tags=list(tags),
            n_customers=n_customers,
            query=dict(query),
            extra=dict(extra),
        )


class OnlineScorer(Protocol):
    """Turns one customer's posted facts into features and rule tags (batch code)."""

    def score(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(feature frame of one row, long rule-tag table)."""
        ...


def _json_row(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if (
            value is None
            or (isinstance(value, (float, np.floating)) and np.isnan(value))
            or value is pd.NA
        ):
            out[str(key)] = None
        elif isinstance(value, pd.Timestamp):
            out[str(key)] = value.isoformat()
        elif isinstance(value, np.generic):
            out[str(key)] = value.item()
        else:
            try:
                missing = bool(pd.isna(value))
            except (TypeError, ValueError):
                missing = False
            out[str(key)] = None if missing else value
    return out
