"""Real-time tagging wired to a project: the tagger, and its adapter for the service.

:func:`live_tagger` builds :class:`streaming.LiveTagger` from the project's stores,
catalogue, feature spec and champion models (the same objects a batch run uses);
:class:`ServiceIngest` is the service's ``EventIngest``: it builds the tagger on first
use (a service that never receives events loads no extra models) and turns
back-pressure and bad batches into 429 and 400 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import FeaturesError
from serving.errors import BadRequest, TooManyRequests
from streaming.consumer import consume
from streaming.errors import BadEvents, Busy
from streaming.tagger import LiveTagger
from tags.live import LIVE_COLUMNS, live_rows
from tags.store import HOLD_MAX_S
from tags.store_hold import batch_in_progress, cursor_if_held
from tagsmith.champions import champion_predictors
from tagsmith.project import Project

__all__ = ["ServiceIngest", "live_tagger"]

log = logging.getLogger(__name__)


def live_tagger(project: Project) -> tuple[LiveTagger, list[str]]:
    """The project's real-time tagger and the notices of loading its champions.

    Also sets this process's thread switch interval to ``streaming.gil_switch_ms``: the
    process that builds a live tagger (the service, ``tagsmith stream run``) is the one
    whose threads pass the GIL between the tagger's stages and the requests.
    """
    # At Python's default 5 ms, 5,000 events/s over HTTP measured p50 0.9-1.6 s / p99
    # 1.5-2.6 s; at 0.5 ms 0.4-0.5 s / 1.1-1.2 s (benchmarks.md, thirteenth session).
    sys.setswitchinterval(project.config.streaming.gil_switch_ms / 1000.0)
    predictors, notices = champion_predictors(project)
    tagger = LiveTagger(
        facts=project.fact_store(),
        live=project.live_events(),
        tag_store=project.tag_store(),
        catalogue=project.catalogue(),
        spec=project.feature_spec(),
        facts_config=project.config.facts,
        predictors=predictors,
        quarantine_dir=project.quarantine_dir,
        max_waiting=project.config.streaming.max_waiting,
    )
    return tagger, notices


class ServiceIngest:
    """``POST /events`` on the project's real-time tagger (``serving.runtime.EventIngest``).

    Args:
        project: The project served.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self._tagger: LiveTagger | None = None
        self._lock = threading.Lock()
        self._seen: tuple[object, int] | None = None
        self._deferred_since: float | None = None  # a poll skipped since (live_rows)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[pd.DataFrame], None]] = []

    @property
    def max_waiting(self) -> int:
        """Batches allowed to wait for tagging before ``POST /events`` answers 429
        (``streaming.max_waiting``; the service sizes its ``/events`` threads by it)."""
        return int(self.project.config.streaming.max_waiting)

    def tagger(self) -> LiveTagger:
        """The tagger (built, with its champions and facts loaded, on first use)."""
        if self._tagger is None:
            with self._lock:
                if self._tagger is None:
                    tagger, _ = live_tagger(self.project)
                    for listener in self._listeners:
                        tagger.subscribe(listener)
                    tagger.warm()
                    # Batches a killed predecessor stored but never tagged.
                    tagger.recover()
                    self._tagger = tagger
        return self._tagger

    def subscribe(self, listener: Callable[[pd.DataFrame], None]) -> None:
        """Hand ``listener`` the rows of every live write of this process
        (:meth:`streaming.LiveTagger.subscribe`); :meth:`ingest` then returns no rows."""
        with self._lock:
            self._listeners.append(listener)
            if self._tagger is not None:
                self._tagger.subscribe(listener)

    def warm(self) -> None:
        """Build the tagger now (the service calls this in the background at start), then
        run the NATS consumer in this thread when ``streaming.consume_in_service``."""
        try:
            tagger = self.tagger()
        except Exception:  # the first POST /events reports it
            log.warning("Real-time tagging could not start yet", exc_info=True)
            return
        cfg = self.project.config.streaming
        if cfg.consume_in_service:
            self._consume(tagger)

    def _consume(self, tagger: LiveTagger) -> None:
        cfg = self.project.config.streaming

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            while not self._stop.is_set():
                try:
                    await consume(
                        tagger, cfg, url=cfg.nats_url, subject=cfg.subject, stop=self._stop
                    )
                except Exception:  # the server may come later or restart: keep trying
                    log.warning("NATS consumer stopped; retrying in 2 s", exc_info=True)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=2.0)

        asyncio.run(main())

    def close(self) -> None:
        """Stop the hosted consumer (it acknowledges nothing it has not applied) and wait
        for the tagger's background work."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._tagger is not None:
            self._tagger.close()

    def writes_paused(self) -> contextlib.AbstractContextManager[object]:
        """While held, no live write of this process commits and every earlier one has
        reached the listeners (:meth:`streaming.LiveTagger.writes_paused`; nothing to
        hold before the tagger is built)."""
        tagger = self._tagger
        return tagger.writes_paused() if tagger is not None else contextlib.nullcontext()

    def ingest(
        self, records: list[Any], *, source: str
    ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
        """Apply one batch; map back-pressure to 429 and unusable batches to 400."""
        try:
            result = self.tagger().apply(records, source=source)
        except Busy as exc:
            raise TooManyRequests(str(exc), retry_after_s=exc.retry_after_s) from exc
        except (BadEvents, FeaturesError) as exc:
            raise BadRequest(str(exc)) from exc
        return result.to_json(), result.rows, list(result.customer_ids)

    def live_rows(self, after_seq: int) -> pd.DataFrame:
        """Live rows written after ``after_seq`` (by this or another process).

        The store is opened only when its files changed since the last look (a ``stat``
        otherwise), so an idle service polling often never holds the file a writer wants.
        """
        store = self.project.tag_store()
        stamp = _stamp(store.path)
        if stamp is None:
            return pd.DataFrame(columns=list(LIVE_COLUMNS))
        if (stamp, after_seq) == self._seen:
            return pd.DataFrame(columns=list(LIVE_COLUMNS))
        deferred = self._deferred_since
        if after_seq > 0 and batch_in_progress(store.path):
            # This process's micro-batch opens the held connection at its write: read
            # through it, not by opening the file now. A reader opened between the held
            # connection's close (its checkpoint) and that write held the write up by its
            # open and read (stalls of up to ~0.5 s at 5,000 events/s); a poll that finds
            # it closed skips its turn, for at most HOLD_MAX_S.
            with cursor_if_held(store.path, timeout_s=store.busy_timeout_s) as held:
                if held is not None:
                    rows = live_rows(held, after_seq=after_seq)
                    self._seen, self._deferred_since = (stamp, after_seq), None
                    return rows
            now = time.monotonic()
            if deferred is None:
                self._deferred_since = deferred = now
            if now - deferred < HOLD_MAX_S:
                return pd.DataFrame(columns=list(LIVE_COLUMNS))
        with store.reader() as con:
            rows = live_rows(con, after_seq=after_seq)
        self._seen, self._deferred_since = (stamp, after_seq), None
        return rows


def _stamp(path: Path) -> tuple[tuple[int, int, int], ...] | None:
    """(inode, mtime, size) of the store file and its write-ahead log (None: no store)."""
    out = []
    for candidate in (path, path.with_name(path.name + ".wal")):
        try:
            st = candidate.stat()
        except FileNotFoundError:
            if candidate == path:
                return None
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)
