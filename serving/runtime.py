"""The tag service's engine, free of HTTP: one object the service calls per request.

:class:`ServingRuntime` puts together the parts, each in its own module:

* :mod:`serving.state`: the immutable state a request reads and its atomic reloads;
* :mod:`serving.access`: API keys, what a role may see, the audit trail;
* :mod:`serving.rendering`: the JSON answers (stored rows rendered once per snapshot);
* :mod:`serving.predictions`: champion scores, looked up or computed for posted facts.

Sources of state are small protocols (``ModelSource``, ``SnapshotSource``,
``Governance``, ``AuditSink``, :class:`OnlineScorer`) so the engine is tested with
in-memory fakes and served with the project's tag store, MLflow registry, catalogue,
policy and audit log (wired in by the ``tagsmith`` package).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from features.errors import FeaturesError
from serving.access import Access, AuditSink, Caller, Governance
from serving.errors import BadRequest, Forbidden
from serving.explaining import model_inputs
from serving.keys import ApiKey
from serving.predictions import LiveModel, ModelSource, OnlineScorer, posted_rows
from serving.rendering import LiveOverlay, SnapshotIndex, iso, render_tags
from serving.state import ReloadResult, ServingState, SnapshotSource, StateKeeper
from tags.errors import TagsError

__all__ = ["EventIngest", "OnlineScorer", "ServingRuntime"]

WRITE_EVENTS = "write_events"
DEFAULT_EVENT_WAITING = 64  # batches an ingest without ``max_waiting`` lets wait

log = logging.getLogger(__name__)


class EventIngest(Protocol):
    """Real-time tagging as the service sees it (wired by ``tagsmith`` to ``streaming``).

    Raises ``serving.errors.BadRequest`` for an unusable batch and
    ``serving.errors.TooManyRequests`` when ingestion outruns tagging. Its ``max_waiting``
    (batches let wait before refusing), if any, sizes ``POST /events``' threads.
    """

    def ingest(
        self, records: list[Any], *, source: str
    ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
        """(JSON answer, live rows written, customer ids re-tagged) of one batch.

        The rows are ``tags.live.LIVE_COLUMNS``, one per re-tagged customer and evaluated
        tag, ``value`` None where the tag no longer applies. An ingest that also has a
        ``subscribe(listener)`` method (the runtime subscribes :meth:`ServingRuntime.merge_live`
        at start) hands the rows of every live write to it instead and returns none here.
        """
        ...

    def live_rows(self, after_seq: int) -> pd.DataFrame:
        """Live rows (``tags.live.LIVE_COLUMNS``) written after ``after_seq``."""
        ...


class Explainer(Protocol):
    """Explains one snapshot customer's tags (``serving.explaining.CatalogueExplainer``)."""

    def explain(
        self,
        index: SnapshotIndex,
        models: Mapping[str, LiveModel],
        customer_id: str,
        selected: frozenset[str],
        features: frozenset[str],
    ) -> dict[str, Any]:
        """The customer's selected tags with their whys, and the features quoted."""
        ...


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
        online_scorer: Scores one customer's posted facts (features, rule tags, the
            champions' scores) for ``POST /score`` (``None``: the endpoint answers 400).
        event_ingest: Real-time tagging for ``POST /events`` (``None``: the endpoint
            answers 400); its live values are served over the snapshot's.
        allows: (role, action) -> whether the policy grants it (``write_events``).
        live_poll_s: Seconds between reads of live values other processes wrote (a
            stream consumer); 0: never.
        explainer: Explains a snapshot customer's tags for ``POST /explain``
            (``None``: the endpoint answers 400).
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
        event_ingest: EventIngest | None = None,
        allows: Callable[[str, str], bool] | None = None,
        live_poll_s: float = 0.0,
        explainer: Explainer | None = None,
    ) -> None:
        self.keeper = StateKeeper(
            models=models,
            model_source=model_source,
            snapshot_source=snapshot_source,
            watch_interval_s=watch_interval_s,
            names=self.display_names,
        )
        self.access = Access(
            governance=governance, audit=audit, verify_key=verify_key, id_pepper=id_pepper
        )
        self.online_scorer = online_scorer
        self.event_ingest = event_ingest
        self.allows = allows or (lambda _role, _action: False)
        self._live = LiveOverlay()
        self._live_lock = threading.Lock()
        self.live_poll_s = live_poll_s
        self._live_stop = threading.Event()
        self._live_thread: threading.Thread | None = None
        self._warm_thread: threading.Thread | None = None
        self._subscribed = False
        self.explainer = explainer
        self._names: dict[str, str] | None = None
        self._inputs: tuple[int, dict[str, tuple[str, ...]]] | None = None

    # ----------------------------------------------------------------- parts
    @property
    def state(self) -> ServingState:
        """The state requests read now."""
        return self.keeper.state

    @property
    def model_tags(self) -> dict[str, str]:
        """Registered model name -> the tag id it produces."""
        return self.keeper.model_tags

    @property
    def model_source(self) -> ModelSource:
        """Champion lookup and loading."""
        return self.keeper.model_source

    @property
    def snapshot_source(self) -> SnapshotSource:
        """Latest tag + feature snapshots."""
        return self.keeper.snapshot_source

    @property
    def governance(self) -> Governance:
        """Catalogue and access policy."""
        return self.access.governance

    @property
    def audit(self) -> AuditSink:
        """Where each request's audit entry goes."""
        return self.access.audit

    @property
    def watch_interval_s(self) -> float:
        """Seconds between background reloads (0: none)."""
        return self.keeper.watch_interval_s

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> ReloadResult:
        """Load everything once (synchronously), then start the watcher threads."""
        result = self.keeper.start()
        if self.online_scorer is not None:
            # A fresh process's first POST /score cost 28 ms of CPU against 6-7 ms for
            # the next ones (measured at load 12): paid here, once, not by a request.
            models = {n: m.model for n, m in self.keeper.state.models.items()}
            try:
                self.online_scorer.warm(models)
            except Exception as exc:  # a made-up customer; the real ones report their own
                log.warning("POST /score warm-up failed: %s: %s", type(exc).__name__, exc)
        subscribe = getattr(self.event_ingest, "subscribe", None)
        if callable(subscribe) and not self._subscribed:
            # Every live write of this process (POST /events, an in-service consumer) is
            # merged once per micro-batch as it commits; the poll is for other processes.
            subscribe(self.merge_live)
            self._subscribed = True
        warm = getattr(self.event_ingest, "warm", None)
        if callable(warm) and self._warm_thread is None:  # real-time tagging's load, off requests
            self._warm_thread = threading.Thread(
                target=warm, name="tagsmith-live-warm", daemon=True
            )
            self._warm_thread.start()
        if self.event_ingest is not None and self.live_poll_s > 0 and self._live_thread is None:
            self._live_stop.clear()
            self._live_thread = threading.Thread(
                target=self._poll_live, name="tagsmith-live-poll", daemon=True
            )
            self._live_thread.start()
        return result

    def stop(self) -> None:
        """Stop the watcher threads (waits for a reload in progress)."""
        self._live_stop.set()
        close = getattr(self.event_ingest, "close", None)
        if callable(close):
            close()
        # Joined, not left to exit: a daemon thread still inside DuckDB's or Arrow's C++ when
        # the interpreter finalizes aborts the process ("exception not rethrown", rc 134).
        for thread in (self._live_thread, self._warm_thread):
            if thread is not None:
                thread.join(timeout=60)
        self._live_thread = self._warm_thread = None
        self.keeper.stop()

    def _poll_live(self) -> None:
        while not self._live_stop.wait(self.live_poll_s):
            try:
                self.refresh_live()
            except Exception:  # the poller must outlive a busy store or a failed read
                log.warning("Reading live tag values failed; retrying", exc_info=True)

    def reload(self, *, force: bool = False) -> ReloadResult:
        """Reload what changed (or everything with ``force``); swap atomically."""
        return self.keeper.reload(force=force)

    # ----------------------------------------------------------------- access
    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller behind an ``Authorization: Bearer KEY`` or ``X-API-Key`` header.

        Raises:
            Unauthorized: No key, or no stored key matches.
        """
        return self.access.authenticate(headers)

    def hash_ids(self, customer_ids: Iterable[str]) -> list[str]:
        """Keyed hashes of customer ids for the audit log (no raw ids in logs)."""
        return self.access.hash_ids(customer_ids)

    def audit_denied(self, caller: Caller | None, action: str, reason: str) -> None:
        """Audit a refused request (bad key or forbidden tags)."""
        self.access.denied(caller, action, reason)

    def display_names(self) -> dict[str, str]:
        """Tag id -> its display name as a JSON literal (rendered once)."""
        if self._names is None:
            self._names = {
                t: json.dumps(str(e.get("display_name") or t), ensure_ascii=False)
                for t, e in self.access.governance.catalog().items()
            }
        return self._names

    def model_inputs(self, state: ServingState) -> dict[str, tuple[str, ...]]:
        """Tag id -> the inputs of the model serving it (once per state)."""
        cached = self._inputs
        if cached is None or cached[0] != id(state.models):
            inputs = {lm.model.tag_id: model_inputs(lm.model) for lm in state.models.values()}
            cached = (id(state.models), inputs)
            self._inputs = cached
        return cached[1]

    def visible_features(
        self, caller: Caller, state: ServingState, selected: frozenset[str] | None = None
    ) -> frozenset[str]:
        """Features the caller's role may see: those feeding a tag it may see (of
        ``selected``, the request's tags, when given)."""
        return self.access.features(caller.role, self.model_inputs(state), selected)

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

        Raises:
            BadRequest: Unknown categories or tag ids.
            Forbidden: Named tags the role may not see.
        """
        selected = self.access.selection(caller, categories, tag_ids)
        state = self.keeper.state  # one read: the whole request sees one consistent state
        overlay = self.live_overlay(state.snapshot.run_id if state.snapshot else None)
        answer = render_tags(
            state.snapshot,
            list(state.models.values()),
            selected,
            customer_ids,
            overlay,
            names=self.display_names(),
        )
        self.access.record(
            caller,
            "serve.tags",
            tags=sorted(answer.returned),
            n_customers=len(customer_ids) - len(answer.unknown),
            query={
                "customer_id_hashes": self.access.hash_ids(customer_ids),
                "categories": list(categories or []),
                "tags": list(tag_ids or []),
            },
            extra={"unknown": len(answer.unknown), "model_versions": answer.model_versions},
        )
        return answer.body

    # ----------------------------------------------------------------- live values
    def live_overlay(self, run_id: str | None) -> LiveOverlay:
        """The live values over the snapshot of ``run_id`` (reloaded when the run changed:
        a batch run replaces live values)."""
        overlay = self._live
        if overlay.run_id == run_id or self.event_ingest is None:
            return overlay
        with self._live_lock:
            if self._live.run_id != run_id:
                rows = self.event_ingest.live_rows(0)
                self._live = LiveOverlay(run_id=run_id).merged(rows)
            return self._live

    def refresh_live(self) -> int:
        """Merge live values other processes wrote (a stream consumer); returns rows read."""
        if self.event_ingest is None:
            return 0
        state = self.keeper.state
        run_id = state.snapshot.run_id if state.snapshot else None
        self.live_overlay(run_id)
        # With this process's writes paused (an ingest that can: ``writes_paused``), so
        # a write committed while the poll waited for the store has reached merge_live
        # before the read: the poll then reads only other processes' rows, instead of
        # reading and merging a whole micro-batch's rows a second time. Taken before
        # the overlay's lock, in the order a write takes them (commit, then merge_live).
        # Read and merged under the overlay's lock, so rows read before a newer
        # in-process write (merged by :meth:`merge_live` meanwhile) cannot overwrite it.
        paused = getattr(self.event_ingest, "writes_paused", None)
        with paused() if paused is not None else contextlib.nullcontext(), self._live_lock:
            rows = self.event_ingest.live_rows(self._live.seq)
            if len(rows):
                self._live = self._live.merged(rows, in_place=True)
        return len(rows)

    def merge_live(self, rows: pd.DataFrame) -> None:
        """Merge the rows of one live write of this process into ``/tags``' overlay.

        The overlay's ``seq`` is also the poll's cursor. Writers of one store commit one
        at a time, so when this write (the lowest ``seq`` of ``rows``) lands above the
        cursor + 1, another process (a stream consumer) committed the writes between
        and the poll has not read them yet: they are read first, or moving the cursor
        past them would hide them from ``/tags`` for good.
        """
        if not len(rows):
            return
        state = self.keeper.state
        run_id = state.snapshot.run_id if state.snapshot else None
        self.live_overlay(run_id)
        with self._live_lock:
            first = int(pd.to_numeric(rows["seq"]).min()) if "seq" in rows.columns else 0
            if self.event_ingest is not None and first > self._live.seq + 1:
                between = self.event_ingest.live_rows(self._live.seq)
                if len(between):
                    between = between[pd.to_numeric(between["seq"]) < first]
                if len(between):
                    self._live = self._live.merged(between, in_place=True)
            self._live = self._live.merged(rows, in_place=True)

    @property
    def event_threads(self) -> int:
        """Threads ``POST /events`` may block: one per batch the ingest lets wait, plus one,
        so the next request reaches the ingest and gets 429 instead of queueing unseen."""
        waiting = getattr(self.event_ingest, "max_waiting", DEFAULT_EVENT_WAITING)
        return int(waiting) + 1

    def ingest_events(self, caller: Caller, records: list[Any]) -> dict[str, Any]:
        """``POST /events``: validate, store and tag a batch; the answer counts what happened.

        Raises:
            Forbidden: The caller's role lacks ``write_events``.
            BadRequest: Real-time tagging is off, or the batch is unusable.
            TooManyRequests: Ingestion outruns tagging (retry later).
        """
        if not self.allows(caller.role, WRITE_EVENTS):
            raise Forbidden(
                f"Role {caller.role!r} may not send events: the access policy does not grant "
                f"it '{WRITE_EVENTS}'."
            )
        if self.event_ingest is None:
            raise BadRequest(
                "Expected real-time tagging to be enabled on this service. Got it off "
                "(streaming.enabled in tagsmith.yaml)."
            )
        answer, rows, customers = self.event_ingest.ingest(
            records, source=f"POST /events ({caller.name})"
        )
        # Rows come back only from an ingest without a subscription (merge_live had them).
        self.merge_live(rows)
        self.access.record(
            caller,
            "serve.events",
            tags=[],
            n_customers=len(customers),
            query={"customer_id_hashes": self.access.hash_ids(customers[:100])},
            extra={k: answer[k] for k in ("received", "accepted", "duplicates", "quarantined")},
        )
        return answer

    def catalog(self, caller: Caller) -> dict[str, Any]:
        """The catalogue entries the caller may see."""
        allowed = self.access.visible(caller.role)
        catalog = self.access.governance.catalog()
        entries = [dict(catalog[t]) | {"tag_id": t} for t in sorted(allowed) if t in catalog]
        self.access.record(
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
        state = self.keeper.state
        self.access.record(caller, "serve.models", tags=[], n_customers=0, query={}, extra={})
        snap = state.snapshot
        return {
            "models": [state.status[n].to_json() for n in self.keeper.model_tags],
            "snapshot": {
                "as_of": snap.as_of if snap else None,
                "run_id": snap.run_id if snap else None,
                "customers": len(snap.positions) if snap else 0,
                "last_error": state.snapshot_error,
            },
            "watch_interval_s": self.keeper.watch_interval_s,
        }

    def admin_reload(self, caller: Caller) -> dict[str, Any]:
        """Check aliases and the tag store now and swap in what changed (admin only).

        Raises:
            Forbidden: The caller's role is not ``admin``.
        """
        self.access.require_admin(caller)
        started = time.perf_counter()
        result = self.keeper.reload()
        self.access.record(
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
        selected = self.access.selection(caller, categories, tag_ids)
        state = self.keeper.state
        cid = str(customer.get("customer_id"))
        as_of_iso = iso(as_of)
        chosen = {n: m.model for n, m in state.models.items() if m.model.tag_id in selected}
        # Population aggregates (medians, quantiles) are the latest batch run's, as in
        # real-time tagging: one posted customer is no population.
        pinned = state.snapshot.thresholds if state.snapshot is not None else None
        try:
            result = self.online_scorer.score_live(
                customer, events, as_of=as_of, models=chosen, thresholds=pinned or None
            )
        except (FeaturesError, TagsError) as exc:  # their messages name the field
            raise BadRequest(f"The posted facts cannot be scored: {exc}") from exc
        rows, model_versions = posted_rows(result, state.models, selected, as_of_iso=as_of_iso)
        values = result.row_values(0)
        self.access.record(
            caller,
            "serve.score",
            tags=sorted({r["tag_id"] for r in rows}),
            n_customers=1,
            query={"customer_id_hashes": self.access.hash_ids([cid]), "events": len(events)},
            extra={"model_versions": model_versions},
        )
        visible = self.visible_features(caller, state, selected)
        return {
            "customer_id": cid,
            "as_of": as_of_iso,
            "model_versions": model_versions,
            "features": {k: v for k, v in values.items() if k == "customer_id" or k in visible},
            "tags": rows,
        }

    def explain(
        self,
        caller: Caller,
        customer_ids: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        tag_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Why each customer has each tag the caller may see (``POST /explain``).

        Rule and fact tags come with their clause traces (feature values and the
        run's thresholds), predicted tags with the serving model's top reasons. Only
        features feeding a tag the caller's role may see are quoted.

        Raises:
            BadRequest: Unknown categories or tag ids, or explanations are off.
            Forbidden: Named tags the role may not see.
        """
        if self.explainer is None:
            raise BadRequest(
                "Expected explanations to be configured (a catalogue). Got a service without."
            )
        selected = self.access.selection(caller, categories, tag_ids)
        state = self.keeper.state
        snap = state.snapshot
        features = self.visible_features(caller, state)
        results: list[dict[str, Any]] = []
        unknown: list[str] = []
        for cid in customer_ids:
            if snap is None or not snap.knows(cid):
                unknown.append(cid)
                results.append({"customer_id": cid, "found": False, "error": "unknown customer id"})
                continue
            results.append(self.explainer.explain(snap, state.models, cid, selected, features))
        returned = sorted({t["tag_id"] for r in results for t in r.get("tags", ())})
        versions = {name: lm.model.version for name, lm in state.models.items()}
        self.access.record(
            caller,
            "serve.explain",
            tags=returned,
            n_customers=len(customer_ids) - len(unknown),
            query={
                "customer_id_hashes": self.access.hash_ids(customer_ids),
                "categories": list(categories or []),
                "tags": list(tag_ids or []),
            },
            extra={"unknown": len(unknown), "model_versions": versions},
        )
        return {
            "as_of": snap.as_of if snap else None,
            "run_id": snap.run_id if snap else None,
            "model_versions": versions,
            "results": results,
            "unknown_ids": unknown,
        }
