"""An import's validated events, held in bounded memory and written sorted.

The importer adds each block's candidate events (those that passed every check but
the duplicate one) with their verdict (``_ok``) and a hash of the whole row
(``_hash``). While they are few they stay in memory and the store writes them as
before. Past :data:`SPILL_FROM_ROWS` they are spilled to disk: every block is cut into
ranges of customer ids (boundaries taken from the ids seen so far) and each range goes
to its own Arrow file. Writing the sorted events file then sorts one range at a time
and appends it to one Parquet file, so the events of a 20M-event import are never all
in memory, and the file is byte for byte the order a whole-file sort gives: ranges
follow the ids' byte order, and inside a range rows keep their import order before
the stable sort (stored events first when the store is rewritten).

Spill files live in a hidden folder of the fact store, sealed like every other file
of the store when it is encrypted, and are removed when the import ends either way.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.coding import sorted_hashes as hashes_in_order
from features.crypto import EncryptionKeys, open_bytes, parquet_source
from features.hash_index import (
    RowHashIndex,
    SeenFilter,
    row_hashes,
    schema_signature,
    sorted_distinct,
)
from features.pipeline import Behind
from features.schema import EVENT_COLUMNS
from features.store_files import (
    EVENT_ENCODING,
    int64_values,
    manifest_counts,
    sorted_by_rank,
    sorted_events,
    take_column,
)

__all__ = ["PART_ROWS", "SPILL_FROM_ROWS", "EventSpill", "filter_rows", "row_hashes", "take_rows"]

# Candidate events kept in memory before spilling (about 0.2 GiB of Arrow data).
SPILL_FROM_ROWS = 2_000_000
# Rows per customer-id range: one range is sorted in memory at a time when writing.
PART_ROWS = 2_000_000
_MAX_PARTS = 512


def take_rows(table: pa.Table, rows: pa.Array) -> pa.Table:
    """``table.take(rows)``, one column at a time: the same table, in a third of the time
    (a block's 11 spill columns cost 100 ms through ``Table.take``, 35 ms so, pyarrow 25).
    Columns of nulls only are made anew (:func:`features.store_files.take_column`)."""
    return pa.Table.from_arrays([take_column(c, rows) for c in table.columns], schema=table.schema)


def filter_rows(table: pa.Table, mask: pa.Array) -> pa.Table:
    """``table.filter(mask)``, one column at a time (half the time of ``Table.filter`` on
    a block's eight columns, as for :func:`take_rows`); columns of nulls only are made
    anew, as there."""
    n_kept = int(pc.sum(mask).as_py() or 0)
    return pa.Table.from_arrays(
        [
            pa.nulls(n_kept, c.type) if c.null_count == len(c) else c.filter(mask)
            for c in table.columns
        ],
        schema=table.schema,
    )


class EventSpill:
    """Candidate events of one import, added block by block in file order.

    Args:
        directory: Folder for spill files (created when first needed, removed by
            :meth:`close`).
        keys: Seal spill files with these keys (an encrypted store).
        expected_rows: How many events the import may hold (sets the number of ranges).
        spill_from: Rows held in memory before spilling (default
            :data:`SPILL_FROM_ROWS`).
        part_rows: Rows per customer-id range (default :data:`PART_ROWS`).
    """

    def __init__(
        self,
        directory: Path,
        keys: EncryptionKeys | None = None,
        *,
        expected_rows: int = 0,
        spill_from: int | None = None,
        part_rows: int | None = None,
    ) -> None:
        self.directory = directory
        self.keys = keys
        self.expected_rows = expected_rows
        self.spill_from = SPILL_FROM_ROWS if spill_from is None else spill_from
        self.part_rows = PART_ROWS if part_rows is None else part_rows
        self.schema: pa.Schema | None = None
        self.accepted = 0
        self.counts: dict[str, Any] = {}
        self._hashes: list[np.ndarray] = []
        self._positions: list[np.ndarray | None] = []
        self._known_ids: pa.Array | None = None
        self._known_range: np.ndarray | None = None
        self._known_rank: np.ndarray | None = None
        self._ids_by_rank: pa.Array | None = None
        self._seen = SeenFilter()
        self._hashed: set[str] = set()  # schema signatures of the tables hashed
        self._memory: list[pa.Table | None] = []  # per block, until spilled
        self._files: list[list[Path]] = []  # per block, once spilled
        self._old: list[Path] = []  # stored events put before the new ones
        self._bounds: pa.Array | None = None
        self._written = 0

    @property
    def spilled(self) -> bool:
        """Whether the events went to disk (else :meth:`table` holds them)."""
        return self._bounds is not None

    def use_known(self, ids: pa.Array) -> None:
        """The known customers' ids: rows that give their position among them
        (:meth:`add`) find their customer range by it instead of comparing ids, and are
        sorted for the file by the id's rank among them (ranked once here)."""
        self._known_ids = ids
        self._known_range = None
        # Known ids are distinct (one row per customer), so rank -> id is a function.
        rank = np.empty(len(ids), dtype=np.int32)
        by_rank = pc.sort_indices(ids)
        rank[np.asarray(by_rank, dtype=np.int64)] = np.arange(len(ids))
        self._known_rank = rank
        self._ids_by_rank = ids.take(by_rank)

    def _rank_of(self, position: np.ndarray | None, n_rows: int) -> np.ndarray:
        """Per row, its customer's byte-order rank among the known ids (-1: unknown)."""
        rank = np.full(n_rows, -1, dtype=np.int32)
        if position is not None and self._known_rank is not None:
            known = position >= 0
            rank[known] = self._known_rank[position[known]]
        return rank

    def add(
        self,
        table: pa.Table,
        ok: np.ndarray,
        hashes: np.ndarray,
        *,
        known_position: np.ndarray | None = None,
        sorted_hashes: np.ndarray | None = None,
    ) -> None:
        """Add one block's candidate events (canonical columns), their verdicts and hashes,
        and optionally each row's position among the known ids (-1: not known) and the
        hashes already sorted."""
        if self.schema is None:
            self.schema = table.schema
        self._hashed.add(schema_signature(table.schema))
        mask = pa.array(ok, pa.bool_())
        table = table.cast(self.schema).append_column("_ok", mask)
        table = table.append_column("_hash", pa.array(hashes, pa.uint64()))
        table = table.append_column("_rank", pa.array(self._rank_of(known_position, len(ok))))
        # The manifest's counts read two columns: filtering all eight cost 70 ms a block.
        accepted = table.select(["occurred_at", "event_type"]).filter(mask)
        if accepted.num_rows:
            self.counts = manifest_counts(accepted, previous=self.counts or None)
        self.accepted += accepted.num_rows
        self._positions.append(known_position)
        # Sorted, so earlier() finds a few hashes in a block by binary search (40 ms to
        # sort a 735k-row block; Arrow's is_in cost 11 ms per earlier block per block,
        # some 4 s over a 20M-event import, as the filter's false alarms reach every block).
        if sorted_hashes is None:
            sorted_hashes = hashes_in_order(hashes)
        self._hashes.append(np.asarray(sorted_hashes, dtype=np.uint64))
        self._seen.add(self._hashes[-1])
        if self.spilled:
            self._memory.append(None)
            self._files.append(self._spill(table, len(self._files)))
            self._positions[-1] = None  # only needed to cut the block into ranges
            return
        self._memory.append(table)
        self._files.append([])
        if sum(t.num_rows for t in self._memory if t is not None) > self.spill_from:
            self._start_spilling()

    def earlier(self, hashes: np.ndarray) -> pa.Table | None:
        """Earlier candidate events whose row hash is among ``hashes`` (the only rows
        that can equal the new ones), canonical columns; ``None`` when there are none.
        Sorted ``hashes`` are looked up faster (the filter's words are read in order)."""
        if not self._hashes or not len(hashes):
            return None
        # The filter answers "maybe" for every earlier hash and a few others; only those
        # are looked up in the earlier blocks (probing every earlier hash with every new
        # one costs O(rows so far) per block: 30 s over a 20M-event import).
        maybe = self._seen.maybe(hashes)
        if not maybe.any():
            return None
        wanted = sorted_distinct(hashes[maybe])
        parts = []
        for block, known in enumerate(self._hashes):
            if not len(known):
                continue
            at = np.minimum(np.searchsorted(known, wanted), len(known) - 1)
            hit = known[at] == wanted
            if not hit.any():
                continue
            found = pa.array(wanted[hit], pa.uint64())
            for table in self._block_tables(block):
                rows = table.filter(pc.is_in(table["_hash"], value_set=found))
                if rows.num_rows:
                    parts.append(rows.select(list(EVENT_COLUMNS)))
        if not parts:
            return None
        return pa.concat_tables(parts)

    def hash_index(self) -> RowHashIndex | None:
        """The hashes of every candidate row added (a superset of the rows the store
        writes: see :mod:`features.hash_index`), for the file they go to; ``None`` when
        the blocks' column types differed (their hashes would not compare)."""
        if len(self._hashed) != 1:
            return None
        # The filter already holds every hash: a large index keeps it as it is.
        return RowHashIndex.of(self._hashes, next(iter(self._hashed)), self._seen.words)

    def table(self) -> pa.Table | None:
        """The accepted events in import order (only while not spilled)."""
        if self.spilled:
            raise RuntimeError("the events were spilled: write them with write_sorted")
        tables = [t for t in self._memory if t is not None]
        if not tables:
            return None
        whole = pa.concat_tables(tables)
        return whole.filter(whole["_ok"]).select(list(EVENT_COLUMNS))

    def put_first(self, paths: list[Path], keys: EncryptionKeys | None) -> None:
        """Put stored events files before the new events (the store is being rewritten)."""
        if not self.spilled:
            raise RuntimeError("only spilled events are merged with stored files")
        for path in paths:
            handle = pq.ParquetFile(parquet_source(path, keys))
            for batch in handle.iter_batches(batch_size=self.part_rows):
                table = pa.Table.from_batches([batch]).select(list(EVENT_COLUMNS))
                assert self.schema is not None
                table = table.cast(self.schema).append_column(
                    "_ok", pa.array(np.ones(table.num_rows, dtype=bool))
                )
                table = table.append_column("_hash", pa.nulls(table.num_rows, pa.uint64()))
                table = table.append_column("_rank", pa.array(self._rank_of(None, len(table))))
                self._old.extend(self._spill(table, -1 - len(self._old)))

    def write_sorted(self, destination: Path, row_group_size: int) -> int:
        """Write the spilled events (and stored ones put first), sorted by customer and
        time, to one zstd Parquet file (sealed with the keys); the rows written."""
        assert self.schema is not None
        sink: Any = io.BytesIO() if self.keys is not None else str(destination)
        written = 0
        # A range is encoded and compressed on a worker thread (the Parquet writer
        # releases the GIL) while the next one is read and sorted here: the two took
        # turns on one core. Ranges reach the writer in order; the worker is joined
        # before the writer closes.
        with (
            pq.ParquetWriter(sink, self.schema, compression="zstd", **EVENT_ENCODING) as writer,
            Behind(
                partial(writer.write_table, row_group_size=row_group_size),
                name="tagsmith-spill-write",
            ) as behind,
        ):
            for part, rank in self._parts():
                ordered = (
                    sorted_events(part)
                    if rank is None
                    else sorted_by_rank(part, rank, ids_by_rank=self._ids_by_rank)
                )
                written += ordered.num_rows
                with _noted(f"while writing the sorted events to {destination}"):
                    behind.put(ordered)
                del ordered, part
            with _noted(f"while writing the sorted events to {destination}"):
                behind.finish()
        if self.keys is not None:
            destination.write_bytes(self.keys.seal(sink.getvalue()))
        return written

    def close(self) -> None:
        """Remove the spill files."""
        self._memory.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EventSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals ----------------------------------------------------------------------
    def _start_spilling(self) -> None:
        tables = [t for t in self._memory if t is not None]
        n_parts = min(_MAX_PARTS, max(2, math.ceil(self.expected_rows / self.part_rows)))
        ranks = np.concatenate([int64_values(t["_rank"]) for t in tables])
        if self._ids_by_rank is not None and len(ranks) and int(ranks.min()) >= 0:
            # Every row's customer is known: the same bounds from the ranks' counts (a
            # bincount) instead of counting and sorting the ids (1.1 s at 2M events).
            bound_ranks = _rank_bounds(ranks, len(self._ids_by_rank), n_parts)
            id_type = tables[0].schema.field("customer_id").type
            self._bounds = self._ids_by_rank.take(pa.array(bound_ranks)).cast(id_type)
            assert self._known_rank is not None
            self._known_range = np.searchsorted(bound_ranks, self._known_rank, side="right").astype(
                np.int16
            )
        else:
            ids = pa.concat_tables(tables)["customer_id"]
            self._bounds = _range_bounds(ids, n_parts)
        self.directory.mkdir(parents=True, exist_ok=True)
        for block, table in enumerate(self._memory):
            if table is not None:
                self._files[block] = self._spill(table, block)
            self._memory[block] = None
            self._positions[block] = None

    def _spill(self, table: pa.Table, block: int) -> list[Path]:
        """Cut ``table`` into customer-id ranges and write each range that has rows."""
        assert self._bounds is not None
        part = self._ranges(table, self._positions[block] if block >= 0 else None)
        order = np.argsort(part, kind="stable")
        counts = np.bincount(part, minlength=len(self._bounds) + 1)
        ordered = take_rows(table, pa.array(order))
        paths = []
        start = 0
        for index, n in enumerate(counts):
            if n:
                path = self.directory / f"p{index:04d}-b{block + 1_000_000:07d}.arrow"
                self._write_ipc(ordered.slice(start, int(n)), path)
                paths.append(path)
            start += int(n)
        return paths

    def _ranges(self, table: pa.Table, position: np.ndarray | None) -> np.ndarray:
        """Each row's customer range: its known customer's (ranked once for all known
        ids) when the position is given, else by comparing its id with the bounds."""
        assert self._bounds is not None
        if position is None or self._known_ids is None:
            return _range_of(table["customer_id"], self._bounds)
        if self._known_range is None:
            self._known_range = _range_of(pa.chunked_array([self._known_ids]), self._bounds)
        part = np.empty(table.num_rows, dtype=np.int16)
        known = position >= 0
        part[known] = self._known_range[position[known]]
        if not known.all():
            others = table["customer_id"].filter(pa.array(~known))
            part[~known] = _range_of(others, self._bounds)
        return part

    def _write_ipc(self, table: pa.Table, path: Path) -> None:
        if self.keys is None:
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                out.write_table(table)
            return
        buffer = pa.BufferOutputStream()
        with pa.ipc.new_file(buffer, table.schema) as out:
            out.write_table(table)
        path.write_bytes(self.keys.seal(buffer.getvalue().to_pybytes()))

    def _read_ipc(self, path: Path) -> pa.Table:
        if self.keys is not None:
            return pa.ipc.open_file(pa.BufferReader(open_bytes(path, self.keys))).read_all()
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()

    def _block_tables(self, block: int) -> Iterator[pa.Table]:
        table = self._memory[block]
        if table is not None:
            yield table
        for path in self._files[block]:
            yield self._read_ipc(path)

    def _parts(self) -> Iterator[tuple[pa.Table, np.ndarray | None]]:
        """Each customer-id range's accepted events (stored ones first), in id order, with
        their customers' ranks when every row has one."""
        assert self._bounds is not None
        by_part: dict[str, list[Path]] = {}
        for path in [*self._old, *(p for files in self._files for p in files)]:
            by_part.setdefault(path.name.split("-")[0], []).append(path)
        for name in sorted(by_part):
            tables = [self._read_ipc(p) for p in by_part[name]]
            whole = pa.concat_tables(tables)
            # Rejected candidates (duplicates found later) are few or none: filtering
            # when there are none would copy every column for nothing.
            if whole["_ok"].null_count or not pc.all(whole["_ok"]).as_py():
                whole = whole.filter(whole["_ok"])
            rank = int64_values(whole["_rank"])
            yield (
                whole.select(list(EVENT_COLUMNS)).combine_chunks(),
                rank if len(rank) and int(rank.min()) >= 0 else None,
            )


def _range_bounds(ids: pa.ChunkedArray, n_parts: int) -> pa.Array:
    """``n_parts - 1`` ids (byte order) cutting ``ids`` into ranges of about equal rows."""
    counts = pc.value_counts(ids)
    values, freq = counts.field("values"), counts.field("counts")
    order = pc.sort_indices(values)
    values, freq = values.take(order), np.asarray(freq.take(order), dtype=np.int64)
    cumulative = np.cumsum(freq)
    targets = cumulative[-1] * np.arange(1, n_parts) / n_parts
    cut = np.unique(np.searchsorted(cumulative, targets, side="right"))
    cut = cut[(cut > 0) & (cut < len(values))]
    return values.take(pa.array(cut, pa.int64()))


def _rank_bounds(ranks: np.ndarray, n_ranks: int, n_parts: int) -> np.ndarray:
    """The ranks of the ids :func:`_range_bounds` picks, given each row's id rank."""
    freq = np.bincount(ranks, minlength=n_ranks)
    present = np.flatnonzero(freq)
    cumulative = np.cumsum(freq[present])
    targets = cumulative[-1] * np.arange(1, n_parts) / n_parts
    cut = np.unique(np.searchsorted(cumulative, targets, side="right"))
    cut = cut[(cut > 0) & (cut < len(present))]
    return present[cut]


def _range_of(ids: pa.ChunkedArray, bounds: pa.Array) -> np.ndarray:
    """Per id, its range: how many bounds are at or below it (byte order)."""
    distinct = pc.unique(ids)
    below = np.zeros(len(distinct), dtype=np.int16)
    for bound in bounds:
        below += pc.greater_equal(distinct, bound).to_numpy(zero_copy_only=False)
    position = pc.index_in(ids, value_set=distinct)
    return below[np.asarray(position.to_numpy(zero_copy_only=False), dtype=np.int64)]


def spill_writer(spill: EventSpill, row_group_size: int) -> Callable[[Path], int]:
    """A writer for the store's commit: writes the spilled events sorted to a path."""
    return lambda path: spill.write_sorted(path, row_group_size)


@contextlib.contextmanager
def _noted(note: str) -> Iterator[None]:
    """Add ``note`` to an exception raised inside (the writer thread's, re-raised here)."""
    try:
        yield
    except Exception as exc:
        exc.add_note(note)
        raise
