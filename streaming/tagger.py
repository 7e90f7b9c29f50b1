"""Real-time tagging: a batch of events in, the touched customers' tags updated.

:meth:`LiveTagger.apply` is one micro-batch:

1. **validate** with the file import's checks and reason codes (bad rows go to the live
   quarantine file, ``quarantine/live-<date>.csv``); events whose ``event_id`` is stored
   already are counted as duplicates and not stored again;
2. **store durably** the accepted events as one live segment of the fact store
   (``features.live``), which every later batch run reads too;
3. **re-tag** the customers the batch touched, with the batch code restricted to them:
   ``build_features`` on their events at "now", the catalogue's rules, the champions'
   predictions. Population-dependent rules (RFM medians, value-tier quantiles) use the
   thresholds the last batch run recorded, not statistics of a handful of customers;
4. **write** their live values to the tag store and record every change as a transition
   (``tags.live``), in one transaction; triggers fire from those transitions.

Batches that arrive while one is being applied (concurrent ``POST /events`` calls) queue
and are applied together as the next micro-batch, up to :data:`MAX_EVENTS_PER_BATCH`
events (group commit): each is validated on its own, as if applied right after the ones
queued before it, then they share one durable segment, one re-tag and one tag-store
transaction, and each caller gets its own counts once all of it is durable and tagged.
The fixed cost of a micro-batch is so paid once per backlog, not once per caller. Steps
1-2 and steps 3-4 are two ordered stages under two locks (:mod:`streaming.pipeline`):
the next micro-batch is validated and stored while this one is re-tagged and written.

Applying the same batch again stores nothing new; its customers are re-tagged again,
which changes nothing unless time moved on (so a batch whose tagging was interrupted
after it was stored is finished by its redelivery). A process killed between storing a
batch and writing its tags does not depend on a redelivery, though: each live write
records the segment it tagged (``tags.live.tagged_segments``), and :meth:`LiveTagger.recover`,
run when a service or consumer starts, re-tags the customers of every segment stored but
never tagged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.live import EVENT_ID, LiveEventLog
from features.schema import FactsConfig
from features.spec import FeatureSpec
from scoring.batch import Predictor
from streaming.checking import Checked, check_batches
from streaming.errors import BadEvents
from streaming.index import CustomerFacts, FactStoreLike
from streaming.pipeline import (
    Request,
    Staged,
    Waiting,
    append_quarantine,
    notify,
    touched,
    written_rows,
)
from streaming.results import ApplyResult
from streaming.retag import ArrayRetag
from tags.catalogue import Catalogue
from tags.live import (
    LiveGrid,
    LiveWrite,
    compact_live,
    latest_run,
    mark_tagged,
    tagged_segments,
    write_live,
)
from tags.live_snapshot import NewestSnapshot, snapshot_key
from tags.live_state import LiveState
from tags.store import TagStore
from tags.store_format import has_tables, naive

__all__ = ["MAX_EVENTS_PER_BATCH", "ApplyResult", "LiveTagger", "live_as_of"]

MAX_EVENTS_PER_BATCH = 10_000

log = logging.getLogger(__name__)


def live_as_of(now: pd.Timestamp) -> pd.Timestamp:
    """The as-of of a live re-tag at ``now``: the next whole second (features count
    events strictly before the as-of, so an event of this instant is included)."""
    return now.tz_convert("UTC").floor("s") + pd.Timedelta(seconds=1)


class LiveTagger:
    """Applies micro-batches of events: validate, store, re-tag, record.

    Two micro-batches at a time per process, one per stage (store, then tag; each
    stage under its own lock, :mod:`streaming.pipeline`); the batches of callers waiting
    are applied together next. At most ``max_waiting`` callers wait, beyond that
    :meth:`apply` raises :class:`Busy` (the service answers 429).

    Args:
        facts: The fact store.
        live: Its live event log.
        tag_store: The tag store.
        catalogue: Tag catalogue (active fact and rule tags are evaluated).
        spec: Feature spec (the batch run's).
        facts_config: Facts config (event types, future tolerance).
        predictors: Champion predictors (empty: rule tags only).
        quarantine_dir: Folder of the live quarantine files.
        clock: Current time (tests pin it).
        max_waiting: Callers allowed to wait for the lock.
        compact_after: Superseded live rows (live writes only append) after which
            :meth:`compact` runs in a background thread.
    """

    def __init__(
        self,
        *,
        facts: FactStoreLike,
        live: LiveEventLog,
        tag_store: TagStore,
        catalogue: Catalogue,
        spec: FeatureSpec,
        facts_config: FactsConfig,
        predictors: Sequence[Predictor] = (),
        quarantine_dir: Path,
        clock: Callable[[], pd.Timestamp] | None = None,
        max_waiting: int = 64,
        compact_after: int = 200_000,
    ) -> None:
        self.live = live
        self.tag_store = tag_store
        self.catalogue = catalogue
        self.spec = spec
        self.facts_config = facts_config
        self.predictors = list(predictors)
        self.quarantine_dir = Path(quarantine_dir)
        self.clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self.index = CustomerFacts(facts, live)
        # Stage 1 (validate, store) under _lock, stage 2 (re-tag, write) under
        # _tag_lock; taken in that order by everyone (streaming.pipeline).
        self._lock = threading.Lock()
        self._tag_lock = threading.Lock()
        self._queue = Waiting(max_waiting)
        self._thresholds: dict[str, dict[str, float | None]] = {}
        self._thresholds_run: str | None = None
        self._thresholds_checked = -1e9
        self._snapshot: NewestSnapshot | None = None
        self._snapshot_checked = -1e9
        self._live_state = LiveState()
        self.compact_after = compact_after
        self._compacting = threading.Event()
        self._compactor: threading.Thread | None = None
        self._listeners: list[Callable[[pd.DataFrame], None]] = []
        self._publishing = threading.Lock()  # a write's commit -> listeners: writes_paused
        self.tags = [t.id for t in catalogue.active(sources=("fact", "rule"))] + [
            str(getattr(p, "tag_id", "")) for p in self.predictors if getattr(p, "tag_id", "")
        ]
        self._retag = ArrayRetag(
            spec=spec,
            catalogue=catalogue,
            facts=facts_config,
            predictors=self.predictors,
            tags=self.tags,
        )

    # -- public ------------------------------------------------------------------------
    def apply(self, records: Sequence[Any], *, source: str) -> ApplyResult:
        """Validate, store and tag one batch of event records (decoded JSON).

        Raises:
            BadEvents: Not a list, or more than :data:`MAX_EVENTS_PER_BATCH` events.
            Busy: Too many batches are waiting already.
        """
        return self.wait(self.submit(records, source=source))

    def submit(self, records: Sequence[Any], *, source: str) -> Request:
        """Queue one batch behind those submitted before it (:meth:`apply` in two steps:
        a consumer queues its next micro-batch in order while the previous one is being
        tagged). Every submitted batch must be given to :meth:`wait`.

        Raises:
            BadEvents: Not a list, or more than :data:`MAX_EVENTS_PER_BATCH` events.
            Busy: Too many batches are waiting already.
        """
        if not isinstance(records, list):
            raise BadEvents(f"Expected a JSON list of event objects. Got {type(records).__name__}.")
        if len(records) > MAX_EVENTS_PER_BATCH:
            raise BadEvents(
                f"Expected at most {MAX_EVENTS_PER_BATCH} events per batch. Got {len(records)}."
            )
        return self._queue.add(list(records), source)

    def wait(self, request: Request) -> ApplyResult:
        """Apply queued micro-batches until ``request``'s is stored and tagged; its result.

        Raises:
            Exception: What failed ``request``'s micro-batch (validation, storage).
        """
        try:
            self._drive(request)
        finally:
            self._queue.leave(request)
        self._maybe_compact()
        if request.error is not None:
            raise request.error
        if request.result is None:  # pragma: no cover - both stages always settle
            raise RuntimeError("A batch was marked applied without a result.")
        return request.result

    def warm(self) -> None:
        """Load the facts and thresholds now (else the first batch does), and run one
        customer through validation and re-tagging without storing or writing anything.

        The first pass through that code pays one-off costs (lazy imports, the models'
        first prediction, library caches) of up to seconds on a loaded machine; paid
        here, at start-up, they stay out of the first event's latency.
        """
        with self._lock, self._tag_lock:
            self.index.refresh()
            self._refresh_thresholds(force=True)
            self._load_snapshot()
            self._sync_live_state()
            if not len(self.index.customers):
                return
            now = self.clock()
            cid = str(self.index.customers["customer_id"].iloc[0])
            probe = {
                EVENT_ID: "tagsmith-warm-up",
                "customer_id": cid,
                "occurred_at": now.isoformat(),
                "event_type": "login",
            }
            self._check([Request([probe], "warm-up")], now)
            self._evaluate([cid], live_as_of(now), at=now)

    def recover(self, *, chunk: int = MAX_EVENTS_PER_BATCH) -> int:
        """Re-tag the customers of live segments stored but never tagged; read other
        processes' writes (segment ids, live rows) now, not in the first micro-batch.

        A process killed after storing a batch and before writing its tags leaves such a
        segment; this finishes it at start-up (a service, a consumer) without waiting for
        a redelivery or a retry. Re-tagging is idempotent: a segment another process is
        tagging now is at worst tagged twice with the same values.

        Returns:
            Customers re-tagged.
        """
        with self._lock, self._tag_lock:
            self.index.refresh()
            self._refresh_thresholds(force=True)
            self.live.known([], refresh=True)
            self._sync_live_state()
            done: set[str] = set()
            if self.tag_store.exists():
                with self.tag_store.reader() as con:
                    done = tagged_segments(con)
            pending = [p for p in self.live.segments() if p.name not in done]
            if not pending:
                return 0
            table = self.live.table(pending)
            ids = [] if table is None else table.column("customer_id").to_pylist()
            customers = self.index.known(str(c) for c in ids)
            now = self.clock()
            names = [p.name for p in pending]
            if not customers:  # erased since: nothing to tag
                with self.tag_store.writer() as con:
                    mark_tagged(con, names, at=naive(now))
                return 0
            for start in range(0, len(customers), chunk):
                last = start + chunk >= len(customers)
                self.retag(
                    customers[start : start + chunk],
                    as_of=live_as_of(now),
                    at=now,
                    segments=names if last else (),
                )
            return len(customers)

    def subscribe(self, listener: Callable[[pd.DataFrame], None]) -> None:
        """Call ``listener`` with the rows of every live write (``tags.live.LIVE_COLUMNS``),
        once per micro-batch, right after it committed and before its callers get their
        results, in write order (under the tagger's lock): an in-process reader (the
        service's ``/tags``) merges each micro-batch once, not once per request in it, and
        sees the in-service stream consumer's writes without polling the store.

        With a listener, the results of batches applied together carry no rows of their
        own (:attr:`ApplyResult.rows` empty; :attr:`ApplyResult.customer_ids` still set).
        """
        self._listeners.append(listener)

    def writes_paused(self) -> AbstractContextManager[object]:
        """No live write of this process commits inside; every one committed before has
        reached the listeners (:meth:`subscribe`).

        A reader of the store that also listens (the service's live poll) reads inside:
        otherwise a poll waiting for the store while a write commits reads that write's
        rows (a whole micro-batch's, up to 10,000 customers x tags) in the moment before
        the listener merges the same rows, and both are merged. Hold it briefly (a read):
        the next write waits for it.
        """
        return self._publishing

    def compact(self) -> int:
        """Delete the live rows newer writes superseded (:func:`tags.live.compact_live`).

        Live writes append a row per re-tagged (customer, tag) and delete nothing, so
        the table grows with every write; this brings it back to one row per pair. One
        transaction, under the tagger's lock (writes wait for it, none pays it itself).

        Returns:
            Rows deleted.
        """
        with self._tag_lock:
            if not self.tag_store.exists():
                return 0
            with self.tag_store.writer() as con:
                deleted = compact_live(con, self._live_state.compaction_scope())
            self._live_state.compacted()
            return deleted

    def _maybe_compact(self) -> None:
        """Compact in a background thread once enough rows are superseded (one at a time)."""
        if self._live_state.superseded < self.compact_after or self._compacting.is_set():
            return
        self._compacting.set()

        def run() -> None:
            try:
                self.compact()
            except Exception:  # the next threshold crossing tries again
                log.warning("Compacting live tag rows failed", exc_info=True)
            finally:
                self._compacting.clear()

        self._compactor = threading.Thread(target=run, name="tagsmith-live-compact", daemon=True)
        self._compactor.start()

    def close(self, timeout_s: float = 60.0) -> None:
        """Wait (bounded) for a background compaction in progress, then close the tag
        store connection the live writes hold open (its checkpoint).

        A daemon left inside DuckDB's C++ at interpreter exit aborts the process; the
        compaction's transaction is atomic: one cut short by the bound loses nothing.
        """
        compactor = self._compactor
        if compactor is not None:
            compactor.join(timeout=timeout_s)
        self.tag_store.release()

    # -- steps -------------------------------------------------------------------------
    def _drive(self, request: Request) -> None:
        """Apply queued micro-batches until one takes ``request``; then wait for it.

        Whoever holds the ingest lock stores every batch queued meanwhile with its own
        (group commit: one segment, one re-tag, one tag-store transaction), then takes
        the tag lock before it lets the ingest lock go (hand over hand,
        :mod:`streaming.pipeline`): the next micro-batch is validated and stored while
        this one is tagged, and micro-batches are tagged in the order they were stored.
        """
        while not request.taken:
            # The tag store's held connection stays open across the micro-batch (and the
            # next ones, while they come): storing and tagging may outlast its idle bound.
            with self.tag_store.keep_open():
                with self._lock:
                    if request.taken:
                        break
                    staged = self._store(self._queue.take(MAX_EVENTS_PER_BATCH))
                    if staged is None:
                        continue
                    self._tag_lock.acquire()
                try:
                    self._tag(staged)
                finally:
                    self._tag_lock.release()
        request.finished.wait()

    def _store(self, group: list[Request]) -> Staged | None:
        """Stage 1 (ingest lock): validate the group's batches, store the accepted
        events as one durable segment, and cut out of the index what stage 2 re-tags.

        Returns:
            What stage 2 tags; None when no batch passed validation or this stage
            failed (every batch of the group then has its error).
        """
        started = time.perf_counter()
        try:
            now = self.clock()
            self.index.refresh()
            self._refresh_thresholds()
            checked = self._check(group, now)
            if not checked:
                return None
            accepted = (
                checked[0].accepted
                if len(checked) == 1
                else pd.concat([c.accepted for c in checked], ignore_index=True)
            )
            appended = self.live.append(accepted, [i for c in checked for i in c.ids])
            # The segment's own table: no second conversion of the events.
            self.index.add(
                accepted[appended.stored] if appended.table is None else appended.table,
                appended.segment,
            )
            customers, own = touched(
                self.index.known,
                checked,
                [str(c) for c in accepted["customer_id"].tolist()],
                appended.stored.tolist(),
            )
            return Staged(
                checked=checked,
                now=now,
                started=started,
                appended=appended,
                customers=customers,
                own=own,
                customer_rows=self.index.customer_table(customers) if customers else None,
                event_rows=self.index.event_tables(customers) if customers else [],
                thresholds=self._thresholds,
                thresholds_run=self._thresholds_run,
            )
        except BaseException as exc:
            for request in group:
                if not request.done:
                    request.settle(error=exc)
            return None

    def _check(self, group: list[Request], now: pd.Timestamp) -> list[Checked]:
        """Validate the group's batches (:mod:`streaming.checking`); a batch that fails
        validation gets its error, the others go on."""

        def failed(request: Any, exc: Exception) -> None:
            request.settle(error=exc)

        return check_batches(
            group,
            now=now,
            index=self.index,
            live=self.live,
            config=self.facts_config,
            on_error=failed,
        )

    def _tag(self, staged: Staged) -> None:
        """Stage 2 (tag lock): re-tag the stored micro-batch's customers once, write
        their live values (marking its segment tagged), and give each batch its result."""
        try:
            now, as_of = staged.now, live_as_of(staged.now)
            write, rows = None, None
            if staged.customers:
                grid = self._retag.grid(
                    staged.customers,
                    staged.customer_rows,
                    staged.event_rows,
                    as_of=as_of,
                    at=naive(now),
                    thresholds=staged.thresholds,
                )
                # The segment is marked tagged by the write that tags its customers (one
                # transaction): a kill before it leaves the segment to :meth:`recover`.
                write, rows = self._write(grid, at=now, segments=staged.segments)
            offset = 0
            for c, own in zip(staged.checked, staged.own, strict=True):
                mine = staged.appended.stored[offset : offset + len(c.ids)]
                offset += len(c.ids)
                own_rows = rows if rows is not None and not self._listeners else pd.DataFrame()
                if len(staged.checked) > 1 and len(own_rows):
                    own_rows = own_rows[own_rows["customer_id"].isin(own)].reset_index(drop=True)
                result = ApplyResult(
                    received=len(c.request.records),
                    accepted=int(mine.sum()),
                    duplicates=len(c.repeats) + int((~mine).sum()),
                    quarantined=dict(c.counts),
                    quarantine_file=append_quarantine(self.quarantine_dir, c.quarantine, now),
                    customers=len(own),
                    changes=write.group.n if write else 0,
                    as_of=as_of,
                    thresholds_from=staged.thresholds_run,
                    seq=write.seq if write else 0,
                    seconds=time.perf_counter() - staged.started,
                    rows=own_rows,
                    batches=len(staged.checked),
                    customer_ids=list(own),
                )
                c.request.settle(result=result)
        except BaseException as exc:
            for c in staged.checked:
                if not c.request.done:
                    c.request.settle(error=exc)

    def retag(
        self,
        customer_ids: Sequence[str],
        *,
        as_of: pd.Timestamp,
        at: pd.Timestamp,
        segments: Sequence[str] = (),
    ) -> tuple[LiveWrite, pd.DataFrame]:
        """Re-tag ``customer_ids`` as of ``as_of`` and write their live values.

        ``segments`` (live segments of these customers' events) are recorded as tagged by
        the same write. Callers hold both locks (:meth:`recover`) or are alone.

        Returns:
            The live write, and the rows written (``tags.live.LIVE_COLUMNS``): one per
            customer and evaluated tag, ``value`` NA where the tag does not apply.
        """
        return self._write(self._evaluate(customer_ids, as_of, at=at), at=at, segments=segments)

    def _write(
        self, grid: LiveGrid, *, at: pd.Timestamp, segments: Sequence[str]
    ) -> tuple[LiveWrite, pd.DataFrame]:
        """Write a re-tag's grid as live values (and transitions); tell the listeners."""
        # From the commit until the listeners have the rows: see writes_paused.
        with self._publishing:
            # Held open for the next micro-batches (tags.store_hold): no open and
            # checkpoint per write; checkpointed when idle, after a bound, or by close().
            with self.tag_store.held_writer() as con:
                write = write_live(
                    con,
                    grid,
                    customers=grid.customers,
                    tags=self.tags,
                    at=naive(at),
                    snapshot=self._snapshot,
                    segments=segments,
                    state=self._live_state,
                )
                if not write.snapshot_in_memory:
                    self._load_snapshot(con)
            # The rows as appended: their text columns are reused, not converted again.
            written = written_rows(grid, at=at, seq=write.seq, table=write.table)
            notify(self._listeners, written)
        return write, written

    def _evaluate(
        self, customer_ids: Sequence[str], as_of: pd.Timestamp, *, at: pd.Timestamp
    ) -> LiveGrid:
        """The customers' live grid as of ``as_of`` (features, rules, champions over
        arrays, :mod:`streaming.retag`): no write, no frame."""
        ids = [str(c) for c in customer_ids]
        return self._retag.grid(
            ids,
            self.index.customer_table(ids),
            self.index.event_columns(ids),
            as_of=as_of,
            at=naive(at),
            thresholds=self._thresholds,
        )

    def _refresh_thresholds(self, *, force: bool = False) -> None:
        """Pick up the thresholds of the newest batch run (checked every few seconds)."""
        if not force and time.monotonic() - self._thresholds_checked < 5.0:
            return
        self._thresholds_checked = time.monotonic()
        latest = latest_run(self.tag_store) if self.tag_store.exists() else None
        if latest is not None and latest[0] != self._thresholds_run:
            run_id, meta = latest
            recorded = meta.get("thresholds") or {}
            self._thresholds = {
                str(tag): {str(text): (None if v is None else float(v)) for text, v in per.items()}
                for tag, per in recorded.items()
                if isinstance(per, dict)
            }
            self._thresholds_run = run_id

    def _load_snapshot(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Hold the newest snapshot in memory (live writes then skip reading it).

        Reloaded when a live write found the copy stale (a batch run or an erasure
        landed), at most every few seconds: loading reads the whole snapshot.
        """
        if time.monotonic() - self._snapshot_checked < 5.0 or not self.tag_store.exists():
            return
        self._snapshot_checked = time.monotonic()
        self._snapshot = None  # a stale copy is never used; free it before reading anew
        if con is not None:
            self._snapshot = NewestSnapshot.load(con)
            return
        with self.tag_store.reader() as reader:
            self._snapshot = NewestSnapshot.load(reader) if has_tables(reader) else None

    def _sync_live_state(self) -> None:
        """Read the current live values now (else the first live write does)."""
        if not self.tag_store.exists():
            return
        with self.tag_store.reader() as con:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_name IN ('runs', 'live_tags')"
            ).fetchone()
            if found and found[0] == 2:
                self._live_state.sync(con, snapshot_key(con))

    @property
    def event_id_field(self) -> str:
        """Name of the id field of an event."""
        return EVENT_ID
