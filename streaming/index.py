"""The facts real-time tagging reads per customer, held in memory.

Re-tagging a handful of customers must not read every stored event: the imported events
are loaded once, sorted by customer, with each customer's slice located by a dictionary;
live events (this process's and other writers' segments) are added as they appear. A new
``facts import`` (the fact store's fingerprint changes) reloads everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.live import EVENT_ID, LiveEventLog
from features.schema import EVENT_COLUMNS, EVENT_DTYPES

__all__ = ["CustomerFacts", "FactStoreLike"]


class FactStoreLike(Protocol):
    """What the index reads of the fact store (``features.store.FactStore``)."""

    def load_customers(self) -> pd.DataFrame: ...

    def events_table(self) -> pa.Table | None: ...

    def manifest(self) -> dict[str, object]: ...


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})


class _Block:
    """Events sorted by customer, each customer's rows located by a dictionary."""

    def __init__(self, table: pa.Table) -> None:
        ids = table["customer_id"].combine_chunks() if table.num_rows else pa.array([])
        sorted_already = len(ids) < 2 or bool(
            pc.all(pc.greater_equal(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py()
        )
        if not sorted_already:
            table = table.sort_by([("customer_id", "ascending"), ("occurred_at", "ascending")])
            ids = table["customer_id"].combine_chunks()
        self.table = table.combine_chunks()
        self.slices: dict[str, tuple[int, int]] = {}
        if len(ids):
            runs = pc.run_end_encode(ids)
            ends = runs.run_ends.to_numpy()
            starts = np.concatenate([[0], ends[:-1]])
            values = runs.values.to_pylist()
            self.slices = {
                str(v): (int(a), int(b)) for v, a, b in zip(values, starts, ends, strict=True)
            }

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def rows_of(self, customer_ids: Sequence[str]) -> pa.Table | None:
        """The rows of ``customer_ids`` (None when none has any)."""
        ranges = [self.slices[c] for c in customer_ids if c in self.slices]
        if not ranges:
            return None
        bounds = np.asarray(ranges, dtype=np.int64)
        lengths = bounds[:, 1] - bounds[:, 0]
        # Every range's row numbers without one np.arange per customer (5,000 customers
        # a micro-batch, looked up twice per batch).
        shift = bounds[:, 0] - np.concatenate([[0], np.cumsum(lengths)[:-1]])
        index = np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        return self.table.take(pa.array(index))


def _canonical(frame: pd.DataFrame) -> pa.Table:
    """Events as an Arrow table of one fixed schema (whatever path they came by)."""
    frame = frame[list(EVENT_COLUMNS)].astype({c: EVENT_DTYPES[c] for c in EVENT_COLUMNS})
    return pa.Table.from_pandas(frame, preserve_index=False)


class CustomerFacts:
    """Customers and their events (imported + live), looked up by customer id.

    Live events are kept as a few sorted blocks, merged like a binary counter (a new
    block swallows the previous one while that one is at most twice its size), so a
    lookup visits O(log n) blocks and each event is re-sorted O(log n) times, however
    many small batches arrive.

    Args:
        store: The fact store.
        live: The live event log.
    """

    def __init__(self, store: FactStoreLike, live: LiveEventLog) -> None:
        self.store = store
        self.live = live
        self._fingerprint: object = None
        self.customers = pd.DataFrame()
        self._customer_rows: pa.Table | None = None
        self._customer_pos: dict[str, int] = {}
        self._base: _Block | None = None
        self._live: list[_Block] = []
        self._segments: set[str] = set()

    # -- loading -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload after a file import; read live segments written since the last look."""
        fingerprint = self.store.manifest().get("fingerprint")
        if fingerprint != self._fingerprint or self._base is None:
            self._load_base()
            self._fingerprint = fingerprint
            self._live.clear()
            self._segments.clear()
        new = [p for p in self.live.segments() if p.name not in self._segments]
        if new:
            table = self.live.table(new)
            if table is not None:
                self._add_live(table.select(list(EVENT_COLUMNS)).to_pandas())
            self._segments.update(p.name for p in new)

    def _load_base(self) -> None:
        customers = self.store.load_customers()
        self.customers = customers.reset_index(drop=True)
        # Rows are taken from one Arrow table: ``DataFrame.iloc`` of a few rows of a
        # million took 7-100 ms (a take per column on many chunks), paid twice a batch.
        self._customer_rows = pa.Table.from_pandas(
            self.customers, preserve_index=False
        ).combine_chunks()
        self._customer_pos = {
            str(c): i for i, c in enumerate(self.customers["customer_id"].astype(str))
        }
        table = self.store.events_table()
        if table is None or not table.num_rows:
            self._base = _Block(_canonical(_empty_events()))
            return
        self._base = _Block(table.select(list(EVENT_COLUMNS)))

    def _add_live(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        self._live.append(_Block(_canonical(frame)))
        while len(self._live) >= 2 and self._live[-2].rows <= 2 * self._live[-1].rows:
            last, before = self._live.pop(), self._live.pop()
            self._live.append(_Block(pa.concat_tables([before.table, last.table])))

    def add(self, events: pd.DataFrame, segment: Path | None) -> None:
        """Events this process just stored as ``segment`` (no need to read it back)."""
        if segment is not None and segment.name not in self._segments:
            self._segments.add(segment.name)
            self._add_live(events[[c for c in events.columns if c != EVENT_ID]])

    # -- lookups -----------------------------------------------------------------------
    def known(self, customer_ids: Iterable[str]) -> list[str]:
        """Of ``customer_ids``, those stored (in order, without repeats)."""
        seen: dict[str, None] = {}
        for cid in customer_ids:
            if cid in self._customer_pos:
                seen.setdefault(cid, None)
        return list(seen)

    def customers_of(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Customer rows of known ids."""
        pos = [self._customer_pos[c] for c in customer_ids if c in self._customer_pos]
        if self._customer_rows is None:
            return self.customers.iloc[pos].reset_index(drop=True)
        taken = self._customer_rows.take(pa.array(pos, type=pa.int64())).to_pandas()
        return taken.astype(self.customers.dtypes.to_dict())

    def signups(self) -> pd.DataFrame:
        """``customer_id`` and ``signup_at`` of every stored customer (for validation)."""
        return self.customers[["customer_id", "signup_at"]]

    def events_of(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Imported and live events of the customers (canonical columns)."""
        blocks = [self._base] if self._base is not None else []
        parts = [t for b in [*blocks, *self._live] if (t := b.rows_of(customer_ids)) is not None]
        if not parts:
            return _empty_events()
        # One conversion to pandas, not one per block: each costs a few ms of fixed
        # overhead, paid twice per micro-batch (validation, re-tag) for a handful of rows.
        dtypes = {c: EVENT_DTYPES[c] for c in EVENT_COLUMNS}
        try:
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # blocks of differing physical types
            frames = [t.to_pandas().astype(dtypes) for t in parts]
            return pd.concat(frames, ignore_index=True)
        return table.combine_chunks().to_pandas().astype(dtypes)

    def customer_table(self, customer_ids: Sequence[str]) -> pa.Table:
        """Customer rows of known ids as Arrow (the array re-tag's input; no frame)."""
        pos = [self._customer_pos[c] for c in customer_ids if c in self._customer_pos]
        if self._customer_rows is None:
            return pa.Table.from_pandas(self.customers.iloc[pos], preserve_index=False)
        return self._customer_rows.take(pa.array(pos, type=pa.int64()))

    def event_tables(self, customer_ids: Sequence[str]) -> list[pa.Table]:
        """Imported and live events of the customers as Arrow tables, one per block that
        has any (blocks may differ in physical types; no frame is built)."""
        blocks = [self._base] if self._base is not None else []
        return [t for b in [*blocks, *self._live] if (t := b.rows_of(customer_ids)) is not None]
