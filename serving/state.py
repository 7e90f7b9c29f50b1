"""What a request reads, held immutable and swapped whole: the state and its reloads.

Everything a request reads lives in one immutable :class:`ServingState` (the latest tag
snapshot indexed by customer, the champion models' scores of every customer of the
feature snapshot, the loaded champion models). A request takes the current state once,
with a single attribute read, and works on it; a reload (new champion, new tagging run)
builds a complete new state on the side and publishes it with a single reference
assignment. So a request never sees half a swap, and a failed reload leaves the old
state serving.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from serving.predictions import LiveModel, ModelSource, ServedModel
from serving.rendering import Snapshot, SnapshotIndex, predicted_texts

__all__ = [
    "ModelStatus",
    "ReloadResult",
    "ServingState",
    "SnapshotSource",
    "StateKeeper",
    "settle_heap",
]

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Where the latest tag and feature snapshots come from (the tag store)."""

    def marker(self) -> str | None:
        """A token that changes whenever a new tagging run lands (``None``: none yet)."""
        ...

    def load(self) -> Snapshot | None:
        """The latest snapshot, or ``None`` when no tagging run has landed."""
        ...


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


def settle_heap() -> None:
    """Tune this process's garbage collector for serving, once everything is loaded.

    What is loaded by then (the snapshot, models, the live tagger's facts) lives as long
    as the process: it is moved out of the collector's generations, so a full collection
    does not walk it again. Requests then allocate many short-lived objects; at the
    default young-generation threshold (700) the collector runs constantly and its
    pauses dominated p99 at concurrency 32 (153 ms -> 46-55 ms with
    ``benchmarks/serving.py``). Process-wide: called by the service's worker after its
    runtime started, by ``tagsmith stream run`` after its tagger warmed, and by the
    real-time benchmarks after the same steps, so they measure what the service runs.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateKeeper:
    """Holds the current :class:`ServingState`; reloads it on demand and in the background.

    Args:
        models: Registered model name -> the tag id it produces.
        model_source: Champion lookup and loading.
        snapshot_source: Latest tag + feature snapshots.
        watch_interval_s: Seconds between checks of aliases and tag store (0: never).
        names: Returns tag id -> display name as a JSON literal, built into every
            snapshot's rows (see :meth:`SnapshotIndex.build`) and into the champions'
            rows (:func:`serving.rendering.predicted_texts`), both once per swap; None:
            rows without names, champions' rows rendered per request.
    """

    def __init__(
        self,
        *,
        models: Mapping[str, str],
        model_source: ModelSource,
        snapshot_source: SnapshotSource,
        watch_interval_s: float = 0.0,
        names: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.model_tags = dict(models)
        self.names = names
        self.model_source = model_source
        self.snapshot_source = snapshot_source
        self.watch_interval_s = watch_interval_s
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
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
            index = SnapshotIndex.build(snapshot, self.names() if self.names else None)
            models = {
                name: self._make_live(live.model, index) for name, live in state.models.items()
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

    def _make_live(self, model: ServedModel, snapshot: SnapshotIndex | None) -> LiveModel:
        # Smoke test on the data it will serve: every score must be a finite number.
        live = LiveModel.build(model, snapshot.features if snapshot is not None else None)
        if snapshot is None or not snapshot.named or self.names is None or not len(live.scores):
            return live
        # Scores change only by a swap: each customer's row is rendered once, here.
        texts = predicted_texts(live, snapshot.as_of, self.names())
        return replace(live, texts=texts)
