"""The facts real-time tagging reads per customer, held in memory.

Re-tagging a handful of customers must not read every stored event: the imported events
are loaded once, sorted by customer, with each customer's slice located by a dictionary;
live events (this process's and other writers' segments) are added as they appear. A new
``facts import`` (the fact store's fingerprint changes) reloads everything.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.live import EVENT_ID, LiveEventLog
from features.schema import EVENT_COLUMNS, EVENT_DTYPES
from features.small_events import EventColumns

__all__ = ["CustomerFacts", "FactStoreLike", "event_arrays", "micros"]


class FactStoreLike(Protocol):
    """What the index reads of the fact store (``features.store.FactStore``)."""

    def load_customers(self) -> pd.DataFrame: ...

    def events_table(self) -> pa.Table | None: ...

    def manifest(self) -> dict[str, object]: ...


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})


class _Block:
    """Events sorted by customer; each customer's rows located by its position in the
    customers table (binary search over a sorted int array: no dictionary per block,
    no Python loop per looked-up customer).

    The imported events come sorted by customer id (positions looked up once per
    customer, at load). Live blocks are sorted by position instead, each row's position
    kept (:attr:`row_pos`): a merge of two blocks then sorts integers and finds the
    customers' ranges by their changes, without a string sort or a dictionary lookup
    per customer (a block is re-sorted O(log n) times as batches arrive).

    Args:
        table: The events (canonical columns).
        positions: Customer id -> position in the customers table; events of customers
            not in it are kept but never looked up (lookups ask for stored customers).
        row_pos: Each row's customer position (-1: not a stored customer), for a live
            block; None: the imported events, sorted by customer id.
    """

    def __init__(
        self, table: pa.Table, positions: Mapping[str, int], row_pos: np.ndarray | None = None
    ) -> None:
        self.pos = np.zeros(0, dtype=np.int64)
        self.starts = np.zeros(0, dtype=np.int64)
        self.ends = np.zeros(0, dtype=np.int64)
        self.row_pos: np.ndarray | None = None
        if row_pos is not None:
            self._by_position(table, np.asarray(row_pos, dtype=np.int64))
            return
        ids = table["customer_id"].combine_chunks() if table.num_rows else pa.array([])
        sorted_already = len(ids) < 2 or bool(
            pc.all(pc.greater_equal(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py()
        )
        if not sorted_already:
            table = table.sort_by([("customer_id", "ascending"), ("occurred_at", "ascending")])
            ids = table["customer_id"].combine_chunks()
        self.table = table.combine_chunks()
        if len(ids):
            runs = pc.run_end_encode(ids)
            ends = np.asarray(runs.run_ends.to_numpy(), dtype=np.int64)
            starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
            get = positions.get
            at = np.fromiter(
                (get(str(v), -1) for v in runs.values.to_pylist()), dtype=np.int64, count=len(ends)
            )
            keep = np.flatnonzero(at >= 0)
            order = keep[np.argsort(at[keep], kind="stable")]
            self.pos, self.starts, self.ends = at[order], starts[order], ends[order]

    def _by_position(self, table: pa.Table, row_pos: np.ndarray) -> None:
        """Sort by (position, time), stable: a customer's rows in time order, ties in
        the order given (as the imported block's sort by id and time)."""
        order = np.lexsort((micros(table["occurred_at"]), row_pos))
        if len(order) and not bool(np.all(order[1:] > order[:-1])):
            table, row_pos = table.take(pa.array(order)), row_pos[order]
        self.table = table.combine_chunks()
        self.row_pos = row_pos
        if not len(row_pos):
            return
        starts = np.flatnonzero(np.concatenate([[True], row_pos[1:] != row_pos[:-1]]))
        ends = np.concatenate([starts[1:], [len(row_pos)]])
        keep = row_pos[starts] >= 0
        self.pos, self.starts, self.ends = row_pos[starts][keep], starts[keep], ends[keep]

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def positions_of_rows(self) -> np.ndarray:
        """Each row's customer position (-1: not a stored customer)."""
        if self.row_pos is not None:
            return self.row_pos
        out = np.full(self.rows, -1, dtype=np.int64)
        lengths = self.ends - self.starts
        shift = self.starts - np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)[:-1]])
        index = np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        out[index] = np.repeat(self.pos, lengths)
        return out

    def find(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of the customers at positions ``pos`` (in that order).

        Returns:
            (the entries of ``pos`` that have rows here, their row counts, the row
            numbers of all their rows, entry after entry).
        """
        if not len(self.pos) or not len(pos):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        k = np.searchsorted(self.pos, pos)
        inside = k < len(self.pos)
        hit = np.zeros(len(pos), dtype=bool)
        hit[inside] = self.pos[k[inside]] == pos[inside]
        starts = self.starts[k[hit]]
        lengths = self.ends[k[hit]] - starts
        # Every range's row numbers without one np.arange per customer (5,000 customers
        # a micro-batch).
        shift = starts - np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)[:-1]])
        index = np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        return np.flatnonzero(hit), lengths, index


@functools.cache
def _canonical_schema() -> pa.Schema:
    """The schema of :func:`_canonical`'s tables."""
    return _canonical(_empty_events()).schema


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
        self._customer_dtypes: dict[Any, Any] = {}
        self._hot: dict[str | None, int | None] = {}
        self._base: _Block | None = None
        self._live: list[_Block] = []
        self._segments: set[str] = set()

    # -- loading -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload after a file import; read live segments written since the last look."""
        self._hot.clear()  # a micro-batch's own ids (see _find)
        fingerprint = self.store.manifest().get("fingerprint")
        if fingerprint != self._fingerprint or self._base is None:
            self._load_base()
            self._fingerprint = fingerprint
            self._live.clear()
            self._segments.clear()
        # Names, not paths, compared: one listing per micro-batch over every segment stored.
        new = [n for n in self.live.segment_names() if n not in self._segments]
        if new:
            table = self.live.table([self.live.directory / n for n in new])
            if table is not None:
                self._add_live(table.select(list(EVENT_COLUMNS)).to_pandas())
            self._segments.update(new)

    def _load_base(self) -> None:
        customers = self.store.load_customers()
        self.customers = customers.reset_index(drop=True)
        self._customer_dtypes = self.customers.dtypes.to_dict()
        # Rows are taken from one Arrow table: ``DataFrame.iloc`` of a few rows of a
        # million took 7-100 ms (a take per column on many chunks), paid twice a batch.
        self._customer_rows = pa.Table.from_pandas(
            self.customers, preserve_index=False
        ).combine_chunks()
        self._hot.clear()
        self._customer_pos = {
            str(c): i for i, c in enumerate(self.customers["customer_id"].astype(str))
        }
        table = self.store.events_table()
        if table is None or not table.num_rows:
            self._base = _Block(_canonical(_empty_events()), self._customer_pos)
            return
        self._base = _Block(table.select(list(EVENT_COLUMNS)), self._customer_pos)

    def _add_live(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self._add_table(_canonical(frame))

    def _add_table(self, table: pa.Table) -> None:
        """Add canonical events (:func:`_canonical`'s schema) as a live block."""
        if not table.num_rows:
            return
        found = self._find([str(c) for c in table["customer_id"].to_pylist()])
        row_pos = np.fromiter(
            (-1 if p is None else p for p in found), dtype=np.int64, count=table.num_rows
        )
        self._live.append(_Block(table, self._customer_pos, row_pos))
        while len(self._live) >= 2 and self._live[-2].rows <= 2 * self._live[-1].rows:
            last, before = self._live.pop(), self._live.pop()
            self._live.append(
                _Block(
                    pa.concat_tables([before.table, last.table]),
                    self._customer_pos,
                    np.concatenate([before.positions_of_rows(), last.positions_of_rows()]),
                )
            )

    def add(self, events: pd.DataFrame | pa.Table, segment: Path | None) -> None:
        """Events this process just stored as ``segment`` (no need to read it back).

        ``events`` may be the segment's own Arrow table (``Appended.table``): taken as
        it is when its event columns have the canonical types, without the round trip
        through pandas a frame costs (~4 ms per micro-batch, most of it fixed).
        """
        if segment is None or segment.name in self._segments:
            return
        self._segments.add(segment.name)
        if isinstance(events, pa.Table):
            table = events.select(list(EVENT_COLUMNS))
            if table.schema.types == _canonical_schema().types:
                self._add_table(table)
                return
            events = table.to_pandas()
        self._add_live(events[[c for c in events.columns if c != EVENT_ID]])

    # -- lookups -----------------------------------------------------------------------
    def known(self, customer_ids: Iterable[str]) -> list[str]:
        """Of ``customer_ids``, those stored (in order, without repeats)."""
        # Repeats dropped first, in C: each id is then looked up once.
        ids = list(dict.fromkeys(customer_ids))
        return [cid for cid, p in zip(ids, self._find(ids), strict=True) if p is not None]

    def customers_of(
        self, customer_ids: Sequence[str], columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Customer rows of known ids (only ``columns`` when given, in that order).

        Validation of a live batch reads two columns: converting only those to pandas
        saves most of this call's ~5 ms fixed cost per micro-batch (a conversion and a
        cast per column of every customer attribute).
        """
        pos = [p for p in self._find(customer_ids) if p is not None]
        names = list(self.customers.columns) if columns is None else list(columns)
        if self._customer_rows is None:
            return self.customers.iloc[pos][names].reset_index(drop=True)
        rows = self._customer_rows.select(names).take(pa.array(pos, type=pa.int64()))
        # Text converted straight to the id column's type, then a cast only of columns
        # still of another type (the types kept at load): a cast of every column after
        # a plain conversion cost ~2.5 ms per micro-batch for two columns.
        text = self._customer_dtypes.get("customer_id")
        text = text if isinstance(text, pd.StringDtype) else None  # mapped: extension types
        frame = rows.to_pandas(types_mapper={pa.string(): text, pa.large_string(): text}.get)
        other = {n: t for n in names if frame[n].dtype != (t := self._customer_dtypes[n])}
        return frame.astype(other) if other else frame

    def signups(self) -> pd.DataFrame:
        """``customer_id`` and ``signup_at`` of every stored customer (for validation)."""
        return self.customers[["customer_id", "signup_at"]]

    def events_of(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """Imported and live events of the customers (canonical columns)."""
        return _frame_of(self.event_tables(customer_ids))

    def events_matching(self, keys: pa.Table) -> pd.DataFrame | None:
        """Stored events (imported and live) sharing a ``(customer_id, occurred_at)``
        pair with a row of ``keys``: the only ones that can be exact duplicates of new
        rows (``features.validation.validate_events``' ``stored_events``).

        Only the occurred_at column of the keys' customers' rows is read per block, then
        the few rows at a wanted time; not every event of every customer as a frame.

        Returns:
            The rows (canonical columns), or None when there are none (the usual case:
            live events are new).
        """
        if not keys.num_rows:
            return None
        ids = [str(c) for c in keys["customer_id"].to_pylist()]
        stamps = keys["occurred_at"]
        # Truncated to microseconds (the stored unit): at worst a few more candidates,
        # which the exact comparison of validation then tells apart.
        times = micros(stamps.cast(pa.timestamp("us", tz=stamps.type.tz), safe=False))
        _, pos = self._positions(set(ids))
        pos = np.unique(pos)
        wanted = np.unique(times)
        pairs = set(zip(ids, times.tolist(), strict=True))
        parts = []
        for block in self._blocks():
            _, _, index = block.find(pos)
            if not len(index):
                continue
            when = micros(block.table["occurred_at"].take(pa.array(index)))
            near = block.table.take(pa.array(index[np.isin(when, wanted)]))
            # The exact pairs (a wanted time may be another wanted customer's).
            mine = [
                (str(c), int(t)) in pairs
                for c, t in zip(
                    near["customer_id"].to_pylist(),
                    micros(near["occurred_at"]).tolist(),
                    strict=True,
                )
            ]
            if any(mine):
                parts.append(near.filter(pa.array(mine, pa.bool_())))
        return _frame_of(parts) if parts else None

    def customer_table(self, customer_ids: Sequence[str]) -> pa.Table:
        """Customer rows of known ids as Arrow (the array re-tag's input; no frame)."""
        pos = [p for p in self._find(customer_ids) if p is not None]
        if self._customer_rows is None:
            return pa.Table.from_pandas(self.customers.iloc[pos], preserve_index=False)
        return self._customer_rows.take(pa.array(pos, type=pa.int64()))

    def event_tables(self, customer_ids: Sequence[str]) -> list[pa.Table]:
        """Imported and live events of the customers as Arrow tables, one per block that
        has any (blocks may differ in physical types; no frame is built)."""
        _, pos = self._positions(customer_ids)
        parts = []
        for block in self._blocks():
            _, _, index = block.find(pos)
            if len(index):
                parts.append(block.table.take(pa.array(index)))
        return parts

    def event_columns(self, customer_ids: Sequence[str]) -> EventColumns:
        """The customers' events (imported and live) as the array re-tag's input, each
        event's customer given as its position in ``customer_ids`` (distinct ids).

        The same arrays as :func:`event_arrays` of :meth:`event_tables` with the owners
        looked up by id, without taking the id column nor hashing it: every row's
        owner is known from the range it was taken from.
        """
        at, pos = self._positions(customer_ids)
        parts: list[pa.Table] = []
        owners: list[np.ndarray] = []
        for block in self._blocks():
            which, lengths, index = block.find(pos)
            if len(index):
                parts.append(block.table.select(_ARRAY_COLUMNS).take(pa.array(index)))
                owners.append(np.repeat(at[which], lengths))
        return event_arrays(parts, owners)

    def _find(self, customer_ids: Iterable[str | None]) -> list[int | None]:
        """Each id's position in the customers table (None: not a stored customer).

        A micro-batch looks its ids up some eight times (validation, storing, cutting
        out what stage 2 tags); in the million-entry dictionary each lookup misses the
        CPU caches (~0.8 us), in a dictionary of the micro-batch's own ids (emptied at
        each :meth:`refresh`) it does not, so each id pays that miss once.
        """
        ids = customer_ids if isinstance(customer_ids, list) else list(customer_ids)
        get = self._customer_pos.get
        if len(ids) > _HOT_MAX:  # a start-up's read of every live segment: not kept
            return [get(c) for c in ids]  # type: ignore[arg-type]
        hot = self._hot
        cold = [c for c in ids if c not in hot]
        if cold:
            if len(hot) + len(cold) > _HOT_MAX:
                hot.clear()
                cold = ids
            hot.update({c: get(c) for c in cold})  # type: ignore[arg-type]
        return [hot[c] for c in ids]

    def _blocks(self) -> list[_Block]:
        return ([self._base] if self._base is not None else []) + self._live

    def _positions(self, customer_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(entries of ``customer_ids`` that are stored customers, their positions)."""
        found = self._find(customer_ids)
        if None not in found:  # the usual case: every id is a stored customer's
            return np.arange(len(found), dtype=np.int64), np.asarray(found, dtype=np.int64)
        at = [k for k, p in enumerate(found) if p is not None]
        return np.asarray(at, dtype=np.int64), np.asarray([found[k] for k in at], np.int64)


_TEXT = pa.large_string()
# Ids :meth:`CustomerFacts._find` keeps between refreshes (a few micro-batches' worth).
_HOT_MAX = 100_000
_NAT = np.iinfo(np.int64).min
# The event columns the array re-tag reads (the owner comes from the lookup).
_ARRAY_COLUMNS = ["occurred_at", "event_type", "amount", "category", "order_id"]


def micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UTC microseconds (int64, NaT as int64 min) of a timestamp column."""
    unit = pa.timestamp("us", tz=getattr(column.type, "tz", None))
    as_int = pc.fill_null(column.cast(unit).cast(pa.int64()), _NAT)
    return np.asarray(as_int.to_numpy(zero_copy_only=False), dtype=np.int64)


def _frame_of(parts: Sequence[pa.Table]) -> pd.DataFrame:
    """Event tables as one canonical frame (one conversion to pandas, not one per
    block: each costs a few ms of fixed overhead)."""
    if not parts:
        return _empty_events()
    dtypes = {c: EVENT_DTYPES[c] for c in EVENT_COLUMNS}
    try:
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # blocks of differing physical types
        frames = [t.to_pandas().astype(dtypes) for t in parts]
        return pd.concat(frames, ignore_index=True)
    return table.combine_chunks().to_pandas().astype(dtypes)


def event_arrays(parts: Sequence[pa.Table], owners: Sequence[np.ndarray]) -> EventColumns:
    """Events (any number of tables with the columns the re-tag reads) as the live
    path's arrays; ``owners[k]`` gives each row of ``parts[k]`` its customer's position
    (-1: not a re-tagged customer, ignored)."""
    text: dict[str, list[Any]] = {k: [] for k in ("event_type", "category", "order_id")}
    t_us: list[np.ndarray] = []
    amount: list[np.ndarray] = []
    for part in parts:
        for name in text:
            text[name].extend(part[name].cast(_TEXT).chunks)
        t_us.append(micros(part["occurred_at"]))
        numbers = part["amount"].cast(pa.float64()).to_numpy(zero_copy_only=False)
        amount.append(np.asarray(numbers, dtype=np.float64))
    joined = {name: pa.chunked_array(text[name], _TEXT).combine_chunks() for name in text}
    encoded = pc.dictionary_encode(joined["event_type"])
    empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
    return EventColumns(
        customer=np.concatenate([np.asarray(o, np.int64) for o in owners]) if parts else empty_i,
        t_us=np.concatenate(t_us) if parts else empty_i,
        type_code=np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64),
        type_names=[str(n) for n in encoded.dictionary.to_pylist()],
        amount=np.concatenate(amount) if parts else empty_f,
        category=joined["category"],
        order_id=joined["order_id"],
    )
