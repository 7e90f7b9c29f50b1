"""What pages read from the tag store, computed once per tagging run and kept in memory.

Pages never query the tag store: opening it and scanning a million customers takes far
longer than a page may. :class:`StoreView` keeps, per state of the store file (a
``stat`` call tells when a run landed), the runs, the sizes of every tag value over
time, the latest coverage with its flags (the store's own ``sizes_over_time`` and
``coverage``), and the recent snapshots as columns (:mod:`console.columns`). When the
file changes, a new state is built in a background thread while pages keep reading the
previous one, then swapped in with one assignment, like the tag service's state.

Everything here covers every tag; pages filter by the viewer's role before rendering.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd
import pyarrow as pa

from console.columns import (
    CustomerIndex,
    SnapshotColumns,
    audience_frame,
    customer_rows,
    load_index,
    load_snapshot,
)
from tags.errors import TagsError
from tags.store import TagStore

__all__ = ["Population", "StoreState", "StoreView", "records"]

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a frame as dicts (what templates and loops read)."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))


@dataclass(frozen=True)
class Population:
    """One snapshot as one row per customer: what audience expressions read.

    Attributes:
        as_of: The snapshot's as-of date.
        frame: ``customer_id`` plus a column per tag (see
            :func:`console.columns.audience_frame`), sorted by ``customer_id``.
    """

    as_of: pd.Timestamp
    frame: pd.DataFrame

    @property
    def size(self) -> int:
        """Customers in the snapshot."""
        return len(self.frame)


@dataclass(frozen=True)
class StoreState:
    """Everything pages read of one state of the tag store file.

    Attributes:
        stamp: (inode, mtime, size) of the file this was built from (``None``: no file).
        dates: As-of dates with a current snapshot, oldest first.
        runs: Every run, newest first (``TagStore.runs``).
        sizes: as_of, tag_id, value, count, share for every snapshot.
        coverage: Latest coverage per tag value with flags (``TagStore.coverage``).
        n_customers: as_of -> customers the run of that date evaluated.
        index: Customers of the snapshots in memory.
        snapshots: The newest snapshots as columns, oldest first.
        built_in_s: Seconds this state took to build.
        error: Why the store could not be read (the page shows it), if it could not.
    """

    stamp: Stamp | None
    dates: list[pd.Timestamp] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    coverage: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_customers: Mapping[pd.Timestamp, int] = field(default_factory=dict)
    index: CustomerIndex | None = None
    snapshots: tuple[SnapshotColumns, ...] = ()
    built_in_s: float = 0.0
    error: str | None = None
    populations: dict[pd.Timestamp, Population] = field(default_factory=dict, compare=False)

    @property
    def latest(self) -> pd.Timestamp | None:
        """The newest snapshot's as-of date."""
        return self.dates[-1] if self.dates else None

    @property
    def loaded_dates(self) -> list[pd.Timestamp]:
        """As-of dates of the snapshots in memory, oldest first."""
        return [s.as_of for s in self.snapshots]

    def snapshot(self, as_of: pd.Timestamp | None = None) -> SnapshotColumns | None:
        """The snapshot in memory current at ``as_of`` (default: the newest)."""
        if not self.snapshots:
            return None
        if as_of is None:
            return self.snapshots[-1]
        earlier = [s for s in self.snapshots if s.as_of <= as_of]
        return earlier[-1] if earlier else None


def _stamp(store: TagStore) -> Stamp | None:
    try:
        st = store.path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class StoreView:
    """Cached reads of a tag store for the console's pages.

    Args:
        store: The tag store.
        tag_kinds: Tag id -> (value type, source) of every catalogued tag, which fixes
            each tag's columns in an audience :class:`Population`.
        expected_tags: Tags that must have customers (flagged ``coverage_zero`` if not).
        threshold: Share shift that flags a value (``store.share_shift_threshold``).
        history_runs: How many of the newest snapshots to keep in memory.
    """

    def __init__(
        self,
        store: TagStore,
        *,
        tag_kinds: Mapping[str, tuple[str, str]],
        expected_tags: Collection[str],
        threshold: float,
        history_runs: int = 12,
    ) -> None:
        self.store = store
        self.tag_kinds = dict(tag_kinds)
        self.expected_tags = sorted(expected_tags)
        self.threshold = threshold
        self.history_runs = history_runs
        self._state: StoreState | None = None
        self._lock = threading.Lock()
        self._frames = threading.Lock()
        self._refreshing = False

    # ------------------------------------------------------------------ state
    def current(self) -> StoreState:
        """The newest state built; starts a background rebuild when the file changed.

        The first call (nothing built yet) builds synchronously.
        """
        state = self._state
        stamp = _stamp(self.store)
        if state is not None and state.stamp == stamp:
            return state
        if state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._build(stamp, None)
                return self._state
        self._refresh_in_background()
        return state

    def warm(self) -> None:
        """Build the first state now (the console's start-up calls it in a thread)."""
        self.current()

    def refreshing(self) -> bool:
        """Whether a newer state is being built in the background."""
        return self._refreshing

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name="console-store-refresh", daemon=True).start()

    def _refresh(self) -> None:
        try:
            previous = self._state
            state = self._build(_stamp(self.store), previous)
            if state.error is None or previous is None:
                self._state = state
            else:
                # Keep serving the previous state and say why it is not newer; the next
                # change of the file (the run that held it finishing) tries again.
                self._state = dataclasses.replace(previous, stamp=state.stamp, error=state.error)
        except Exception:  # the previous state keeps serving; the next request retries
            log.exception("Refreshing the console's view of the tag store failed")
        finally:
            with self._lock:
                self._refreshing = False

    def _build(self, stamp: Stamp | None, previous: StoreState | None) -> StoreState:
        began = time.perf_counter()
        if stamp is None:
            return StoreState(stamp=None)
        try:
            runs = self.store.runs()
            dates = self.store.snapshot_dates()
            if not dates:
                return StoreState(stamp=stamp, runs=runs, built_in_s=time.perf_counter() - began)
            sizes = self.store.sizes_over_time()
            coverage = self.store.coverage(
                dates[-1], threshold=self.threshold, expected_tags=self.expected_tags
            )
            succeeded = [r for r in records(runs) if r["status"] == "succeeded"]
            counts = {
                pd.Timestamp(r["as_of"]): int(r["n_customers"])
                for r in succeeded
                if not pd.isna(r["n_customers"])
            }
            run_ids = {pd.Timestamp(r["as_of"]): str(r["run_id"]) for r in succeeded}
            index, snapshots = self._columns(dates[-self.history_runs :], run_ids, previous)
        except TagsError as exc:
            # A tagging run holds the file, or it is unreadable: say so, keep what we had.
            return StoreState(stamp=stamp, error=str(exc), built_in_s=time.perf_counter() - began)
        return StoreState(
            stamp=stamp,
            dates=dates,
            runs=runs,
            sizes=sizes,
            coverage=coverage,
            n_customers=counts,
            index=index,
            snapshots=snapshots,
            built_in_s=time.perf_counter() - began,
        )

    def _columns(
        self,
        dates: list[pd.Timestamp],
        run_ids: Mapping[pd.Timestamp, str],
        previous: StoreState | None,
    ) -> tuple[CustomerIndex, tuple[SnapshotColumns, ...]]:
        """The snapshots of ``dates`` as columns, reusing unchanged ones of ``previous``."""
        kept = {
            (s.as_of, s.run_id): s for s in (previous.snapshots if previous is not None else ())
        }
        with self.store.reader() as con:
            index = load_index(con, dates)
            old_index = previous.index if previous is not None else None
            same_index = old_index is not None and old_index.ids.equals(index.ids)
            out = []
            for d in dates:
                run_id = run_ids.get(d, "")
                reuse = kept.get((d, run_id))
                if reuse is not None and old_index is not None:
                    out.append(reuse if same_index else reuse.realigned(old_index, index))
                else:
                    out.append(load_snapshot(con, index, d, run_id))
        return index, tuple(out)

    # ------------------------------------------------------------------ reads
    def population(self, as_of: pd.Timestamp | None = None) -> Population | None:
        """A snapshot in memory as one row per customer (default: the newest).

        Built on first use per snapshot and kept with the state.
        """
        state = self.current()
        snap = state.snapshot(as_of)
        if snap is None or state.index is None:
            return None
        cached = state.populations.get(snap.as_of)
        if cached is None:
            with self._frames:
                cached = state.populations.get(snap.as_of)
                if cached is None:
                    frame = audience_frame(snap, state.index, self.tag_kinds)
                    cached = Population(as_of=snap.as_of, frame=frame)
                    state.populations[snap.as_of] = cached
        return cached

    def in_latest(self, customer_id: str) -> bool:
        """Whether the newest snapshot has a row for ``customer_id``."""
        state = self.current()
        snap = state.snapshot()
        if snap is None or state.index is None:
            return False
        pos = state.index.position(customer_id)
        return pos is not None and bool(snap.present[pos])

    def history(self, customer_id: str, tags: Collection[str]) -> pd.DataFrame:
        """One customer's rows in the snapshots in memory, for ``tags``."""
        state = self.current()
        if state.index is None:
            return customer_rows((), CustomerIndex.of(pa.array([], pa.string())), customer_id, tags)
        return customer_rows(state.snapshots, state.index, customer_id, tags)

    def known(self) -> dict[str, Any]:
        """Summary figures for the page footer (latest as-of, customers, refresh state)."""
        state = self.current()
        latest = state.latest
        return {
            "as_of": latest,
            "customers": state.n_customers.get(latest, 0) if latest is not None else 0,
            "refreshing": self._refreshing,
            "error": state.error,
        }
