"""File-level helpers of the fact store: sorting events for a file, the manifest's
counts (whole or added to the previous ones), and finding the stored events that can
duplicate new ones without decoding every stored row.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.coding import rank_time_order
from features.crypto import EncryptionKeys, parquet_source, read_parquet_schema, write_parquet
from features.errors import StoreError
from features.hash_index import RowHashIndex, indexes_of, schema_signature, sorted_distinct
from features.io import file_sha256
from features.schema import EVENT_COLUMNS, arrow_table, check_events

__all__ = [
    "EVENT_ENCODING",
    "IMPORT_LOG_COLUMNS",
    "StoredKeys",
    "StoredRows",
    "canonical_events",
    "customer_time_order",
    "int64_values",
    "manifest_counts",
    "matching_events",
    "merge_counts",
    "read_filtered",
    "read_store_parquet",
    "sorted_by_rank",
    "sorted_events",
    "take_column",
    "unreadable",
]

# Dictionary pages only for the columns with few distinct values: for ids, times and
# amounts Parquet builds a dictionary, outgrows it and falls back to plain pages. At
# 1.5M events this writes in 0.30 s instead of 0.47 s, and 15 MiB instead of 19 MiB.
EVENT_ENCODING: dict[str, Any] = {
    "use_dictionary": ["event_type", "category", "product_id", "quantity"]
}

# The import log's fields, in the order FactStore.import_log gives them.
IMPORT_LOG_COLUMNS = (
    "import_id",
    "imported_at",
    "kind",
    "source",
    "sha256",
    "dialect",
    "rows_read",
    "accepted",
    "quarantined",
    "quarantined_by_reason",
    "quarantine_file",
    "derived_customers",
)

# Past this share of a store's row groups, the stored events of rows whose hash is found
# come from the hashed keys of every file (a re-import: every row found) instead.
_FEW_GROUPS = 0.25
# Past this many found rows the hashed keys answer without listing their customers first
# (a block of a re-imported file: every row found).
_FEW_ROWS = 100_000

# Columns are gathered on both cores: Arrow's take releases the GIL, and the gather of
# the text columns is the larger half of sorting an import's events.
_TAKE_WORKERS = 2


def sorted_events(events: pd.DataFrame | pa.Table) -> pa.Table:
    """Canonical events as an Arrow table sorted by customer and time.

    Raises:
        StoreError: An Arrow table does not have exactly the canonical columns.
    """
    events = canonical_events(events)
    return _taken(events, customer_time_order(events))


def sorted_by_rank(
    events: pa.Table, rank: np.ndarray, ids_by_rank: pa.Array | None = None
) -> pa.Table:
    """Canonical events (no missing time) sorted as :func:`sorted_events` sorts them,
    given each row's customer rank: any numbers ordered as the ids' byte order, equal
    for equal ids (an import ranks its known customers once, where sorting each range
    of a file ranked the range's ids again: 0.18 s of 0.44 s for 2M events).

    ``ids_by_rank``, when given, holds each rank's id (``ids_by_rank[rank[i]]`` is row
    ``i``'s id): the sorted id column is then read from it in rank order, a sequential
    gather, instead of gathering the rows' own ids in random order (100-280 ms for 2M
    events against some 25 ms).

    Raises:
        StoreError: The table does not have exactly the canonical columns.
    """
    events = canonical_events(events)
    times = events["occurred_at"]
    if events.num_rows < 2 or times.null_count:
        return sorted_events(events)
    rank = np.asarray(rank, dtype=np.int64)
    order = rank_time_order(rank - rank.min(), int64_values(times.cast(pa.int64())))
    if order is None or ids_by_rank is None:
        return _taken(events, order)
    ids = ids_by_rank.take(pa.array(rank[order])).cast(events.schema.field("customer_id").type)
    return _taken(events, order, given={"customer_id": ids})


# Text columns of few distinct values: gathered through a dictionary (encode, gather the
# int32 codes, decode from a dictionary that stays in cache): 40 ms instead of 110 ms per
# 2M events, because the random reads of a plain gather miss the cache on every row.
_FEW_VALUES = ("event_type", "category", "product_id")


def _taken(
    events: pa.Table, order: np.ndarray | None, given: dict[str, pa.Array] | None = None
) -> pa.Table:
    """``events`` in ``order`` (``None``: as they are); ``given`` columns are already."""
    if order is None:
        return events
    rows = pa.array(order)
    given = given or {}

    def take(name: str, column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        if name in given:
            return given[name]
        if name in _FEW_VALUES and pa.types.is_large_string(column.type):
            return _take_few(column, rows)
        return take_column(column, rows)

    with ThreadPoolExecutor(_TAKE_WORKERS, thread_name_prefix="tagsmith-sort") as pool:
        columns = list(pool.map(take, events.column_names, events.columns))
    return pa.Table.from_arrays(columns, schema=events.schema)


def take_column(column: pa.ChunkedArray | pa.Array, rows: pa.Array) -> pa.Array | pa.ChunkedArray:
    """``column.take(rows)``; a column of nulls only (events without product or order
    ids) is made anew: gathering its offsets cost 3.3 ms per 735k rows, as much as a
    column of numbers."""
    if column.null_count == len(column):
        return pa.nulls(len(rows), column.type)
    return column.take(rows)


def _take_few(column: pa.ChunkedArray, rows: pa.Array) -> pa.Array | pa.ChunkedArray:
    """``column.take(rows)`` through a dictionary when the column has few distinct
    values (a quarter of its rows or fewer), else the plain gather."""
    if column.null_count == len(column):
        return take_column(column, rows)
    whole = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    coded = pc.dictionary_encode(whole)
    if len(coded.dictionary) * 4 > max(len(whole), 1):
        return whole.take(rows)
    return coded.dictionary.take(coded.indices.take(rows))


def canonical_events(events: pd.DataFrame | pa.Table) -> pa.Table:
    """Canonical events as an Arrow table (a DataFrame is checked first).

    Raises:
        StoreError: An Arrow table does not have exactly the canonical columns.
    """
    if isinstance(events, pd.DataFrame):
        return arrow_table(check_events(events))
    if events.schema.names != list(EVENT_COLUMNS):
        raise StoreError(
            f"Expected event columns {list(EVENT_COLUMNS)}. Got {events.schema.names}."
        )
    return events


def customer_time_order(events: pa.Table) -> np.ndarray | None:
    """The stable permutation sorting ``events`` by customer id (byte order, as Arrow
    sorts text) and time; ``None`` when they are in that order already.

    The same order as ``Table.sort_by`` on the two columns, at a fraction of its cost:
    Arrow's multi-key sort compares the id strings row against row, where here each
    distinct id is ranked once and rows are sorted by one int64 key (rank and time).
    """
    if events.num_rows < 2:
        return None
    ids, times = events["customer_id"], events["occurred_at"]
    if ids.null_count or times.null_count:  # not canonical events: Arrow's own sort
        return _arrow_order(events)
    distinct = pc.unique(ids)
    distinct = distinct.take(pc.sort_indices(distinct))
    rank = int64_values(pc.index_in(ids, value_set=distinct))
    return rank_time_order(rank, int64_values(times.cast(pa.int64())))


def _arrow_order(events: pa.Table) -> np.ndarray:
    return pc.sort_indices(
        events, [("customer_id", "ascending"), ("occurred_at", "ascending")]
    ).to_numpy()


def int64_values(values: pa.ChunkedArray) -> np.ndarray:
    """A null-free integer column as one contiguous int64 array."""
    parts = [np.asarray(c.to_numpy(), dtype=np.int64) for c in values.chunks]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def manifest_counts(events: pa.Table, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Event count, time span and per-type counts of ``events``, added to ``previous``
    (the manifest of the content they extend) when given."""
    span = pc.min_max(events["occurred_at"]).as_py() if events.num_rows else {}
    first, last = span.get("min"), span.get("max")
    types: dict[str, int] = {}
    for c in pc.value_counts(events["event_type"]).to_pylist():
        types[str(c["values"])] = int(c["counts"])
    counts = {
        "events": events.num_rows,
        "first_event_at": first.isoformat() if first is not None else None,
        "last_event_at": last.isoformat() if last is not None else None,
        "event_types": dict(sorted(types.items())),
    }
    return merge_counts(counts, previous) if previous else counts


def merge_counts(counts: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest counts of two contents together (``previous`` may be a whole
    manifest; only its counts are read)."""
    if not previous:
        return {k: counts[k] for k in ("events", "first_event_at", "last_event_at", "event_types")}
    types = dict(counts.get("event_types", {}))
    for name, n in previous.get("event_types", {}).items():
        types[name] = types.get(name, 0) + int(n)
    times = [
        pd.Timestamp(source[k])
        for source in (counts, previous)
        for k in ("first_event_at", "last_event_at")
        if source.get(k)
    ]
    first = min(times) if times else None
    last = max(times) if times else None
    return {
        "events": int(counts.get("events", 0)) + int(previous.get("events", 0)),
        "first_event_at": first.isoformat() if first is not None else None,
        "last_event_at": last.isoformat() if last is not None else None,
        "event_types": dict(sorted(types.items())),
    }


def matching_events(
    paths: Sequence[Path], keys: EncryptionKeys | None, wanted: pa.Table
) -> pa.Table:
    """Events of ``paths`` whose ``(customer_id, occurred_at)`` pair is in ``wanted``
    (one question; an import asking once a block keeps a :class:`StoredKeys`).

    Raises:
        StoreError: A file cannot be read.
    """
    with StoredKeys(paths, keys) as stored:
        found = stored.matching(wanted)
    assert found is not None  # paths is not empty
    return found


# The key hash of an event: both sides cast alike, so a stored file's physical types
# (string kinds) hash as the new rows' do.
_KEY_HASH = "hash(CAST(customer_id AS VARCHAR), CAST(occurred_at AS TIMESTAMPTZ))"


class StoredRows(Protocol):
    """Finds the stored events that may equal new rows (:meth:`StoredKeys.matching`)."""

    def __call__(
        self, wanted: pa.Table, hashes: np.ndarray | None = None, schema: pa.Schema | None = None, /
    ) -> pa.Table | None: ...


class StoredKeys:
    """The stored events sharing a ``(customer_id, occurred_at)`` pair with new rows
    (only those can be exact duplicates of them), for many questions in a row.

    The two key columns of every file are read and hashed once, on the first question,
    into a DuckDB table of hashes, 8 bytes an event, in file order: a row's ``rowid``
    gives its file and row (a table of (hash, file, row) cost twice the CPU to fill:
    1.6 s against 0.76 s for 21.6M events). An import asks once per
    32 MiB block; reading the keys of every stored event for each block made appending
    1M events to a 20M-event store cost 2.46x importing them alone. A question joins its
    keys' hashes with that table, reads whole rows only from the row groups holding a
    match (a day's events checked against a year of history decode none of the year's
    rows), and keeps the rows whose pair is asked for (a hash collision costs a read).

    Args:
        paths: The store's event files (base file first, then segments).
        keys: Keys of an encrypted store.
    """

    def __init__(self, paths: Sequence[Path], keys: EncryptionKeys | None) -> None:
        self.paths = list(paths)
        self.keys = keys
        self._con: duckdb.DuckDBPyConnection | None = None
        self._starts = np.zeros(1, dtype=np.int64)  # first rowid of each file, then the end
        self._indexes: list[RowHashIndex | None] | None = None  # read on the first use

    def matching(
        self,
        wanted: pa.Table,
        hashes: np.ndarray | None = None,
        schema: pa.Schema | None = None,
    ) -> pa.Table | None:
        """Stored events whose ``(customer_id, occurred_at)`` pair is among ``wanted``'s,
        file by file in stored order; ``None`` when nothing is stored.

        With ``hashes`` (the new rows' row hashes over the canonical columns of a table
        of ``schema``) and a trusted row-hash index beside every stored file
        (:mod:`features.hash_index`), only the pairs of rows whose hash is found there
        are asked for, and the stored events of those rows' exact duplicates are all
        among the answer: no key column is read when no hash is found, and only the
        row groups of the found rows' customers when they are few.

        Raises:
            StoreError: A file of the store cannot be read.
        """
        if not self.paths:
            return None
        if hashes is not None and schema is not None:
            hit = self._indexed(hashes, schema)
            if hit is not None:
                if not hit.any():
                    return read_parquet_schema(self.paths[0], self.keys).empty_table()
                wanted = wanted.filter(pa.array(hit))
                few = self._of_customers(wanted) if len(wanted) <= _FEW_ROWS else None
                if few is not None:
                    return few
        con = self._index()
        con.register("wanted_keys", wanted.select(["customer_id", "occurred_at"]))
        try:
            found = con.execute(
                f"SELECT rowid FROM stored_keys WHERE h IN (SELECT {_KEY_HASH} FROM wanted_keys) "  # noqa: S608
                "ORDER BY rowid"
            ).fetchnumpy()
            rowid = np.asarray(found["rowid"], np.int64)
            files = np.searchsorted(self._starts, rowid, side="right") - 1
            rows = rowid - self._starts[files]
            parts = []
            for number in np.unique(files):
                path = self.paths[int(number)]
                try:
                    parts.append(_rows_of(path, self.keys, rows[files == number]))
                except (OSError, pa.ArrowException) as exc:
                    raise unreadable(path, exc) from exc
            if not parts:
                return read_parquet_schema(self.paths[0], self.keys).empty_table()
            schema = parts[0].schema
            candidates = pa.concat_tables([t.cast(schema) for t in parts])
            return self._exact(con, candidates)
        finally:
            con.unregister("wanted_keys")

    def _indexed(self, hashes: np.ndarray, schema: pa.Schema) -> np.ndarray | None:
        """Per row hash, whether a stored file's row-hash index holds it; ``None`` unless
        every stored file has a trusted index of rows hashed as ``schema``'s."""
        if self.keys is not None:  # an encrypted store keeps no row hashes
            return None
        if self._indexes is None:
            try:
                self._indexes = indexes_of(self.paths)
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(self.paths[0], exc) from exc
        signature = schema_signature(schema)
        if any(i is None or i.schema != signature for i in self._indexes):
            return None
        distinct = sorted_distinct(np.asarray(hashes, dtype=np.uint64))
        found = np.zeros(len(distinct), dtype=bool)
        for index in self._indexes:
            assert index is not None
            found |= index.found(distinct)
        hits = distinct[found]
        if not len(hits):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(hits, hashes), len(hits) - 1)
        return np.asarray(hits[at] == hashes, dtype=bool)

    def _of_customers(self, wanted: pa.Table) -> pa.Table | None:
        """The stored events of ``wanted``'s pairs read from the row groups of its
        customers only (files are sorted by customer; a group's id range is in its
        statistics); ``None`` when those are more than :data:`_FEW_GROUPS` of the
        groups (the hashed keys of every file answer that cheaper)."""
        ids = sorted(set(wanted["customer_id"].cast(pa.string()).to_pylist()))
        plans = []
        for path in self.paths:
            try:
                handle = pq.ParquetFile(path)
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(path, exc) from exc
            plans.append((path, handle, _groups_holding(handle, ids)))
        total = sum(handle.num_row_groups for _, handle, _ in plans)
        if sum(len(groups) for *_, groups in plans) > total * _FEW_GROUPS:
            return None
        value_set = pa.array(ids, pa.string())
        parts = []
        for path, handle, groups in plans:
            if groups:
                try:
                    table = handle.read_row_groups(groups)
                except (OSError, pa.ArrowException) as exc:
                    raise unreadable(path, exc) from exc
                ids_of = table["customer_id"].cast(pa.string())
                parts.append(table.filter(pc.is_in(ids_of, value_set=value_set)))
        if not parts:
            return read_parquet_schema(self.paths[0], self.keys).empty_table()
        candidates = pa.concat_tables([t.cast(parts[0].schema) for t in parts])
        with duckdb.connect() as con:
            con.register("wanted_keys", wanted.select(["customer_id", "occurred_at"]))
            return self._exact(con, candidates)

    def close(self) -> None:
        """Drop the hashed keys."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> StoredKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _index(self) -> duckdb.DuckDBPyConnection:
        """The connection holding ``stored_keys`` (built on the first call)."""
        if self._con is not None:
            return self._con
        con = duckdb.connect()
        try:
            # Rows keep the order they are inserted in: rowid = file start + row.
            con.execute("SET preserve_insertion_order = true")
            con.execute("CREATE TABLE stored_keys (h UBIGINT)")
            self._starts = np.zeros(len(self.paths) + 1, dtype=np.int64)
            for number, path in enumerate(self.paths):
                self._add_file(con, number, path)
        except BaseException:
            con.close()
            raise
        self._starts = np.cumsum(self._starts)
        self._con = con
        return con

    def _add_file(self, con: duckdb.DuckDBPyConnection, number: int, path: Path) -> None:
        """Hash file ``number``'s keys into ``stored_keys`` (its row count noted for the
        rowids): DuckDB scans a plain file itself (reading the columns into Arrow first
        costs twice the CPU)."""
        insert = f"INSERT INTO stored_keys SELECT {_KEY_HASH} FROM "  # noqa: S608
        try:
            source = parquet_source(path, self.keys)
            if isinstance(source, Path):
                added = con.execute(insert + "read_parquet(?)", [str(source)]).fetchone()
            else:
                stored = pq.read_table(source, columns=["customer_id", "occurred_at"])
                con.register("sealed_keys", stored)
                added = con.execute(insert + "sealed_keys").fetchone()
                con.unregister("sealed_keys")
        except (OSError, pa.ArrowException, duckdb.Error) as exc:
            raise unreadable(path, exc) from exc
        assert added is not None
        self._starts[number + 1] = int(added[0])

    @staticmethod
    def _exact(con: duckdb.DuckDBPyConnection, candidates: pa.Table) -> pa.Table:
        """The candidate rows whose key pair is asked for, in their order."""
        numbered = candidates.select(["customer_id", "occurred_at"]).append_column(
            "_i", pa.array(np.arange(candidates.num_rows, dtype=np.int64))
        )
        con.register("candidate_keys", numbered)
        try:
            keep = con.execute(
                "SELECT _i FROM candidate_keys c SEMI JOIN wanted_keys w ON "
                "CAST(c.customer_id AS VARCHAR) = CAST(w.customer_id AS VARCHAR) AND "
                "CAST(c.occurred_at AS TIMESTAMPTZ) = CAST(w.occurred_at AS TIMESTAMPTZ) "
                "ORDER BY _i"
            ).fetchnumpy()["_i"]
        finally:
            con.unregister("candidate_keys")
        return candidates.take(pa.array(np.asarray(keep, dtype=np.int64)))


def _groups_holding(handle: pq.ParquetFile, ids: list[str]) -> list[int]:
    """The row groups whose ``customer_id`` range (statistics) may hold one of ``ids``
    (sorted; Python compares strings by code point, as Parquet orders UTF-8 bytes)."""
    column = handle.schema_arrow.get_field_index("customer_id")
    groups = []
    for g in range(handle.num_row_groups):
        stats = handle.metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        at = bisect.bisect_left(ids, stats.min)
        if at < len(ids) and ids[at] <= stats.max:
            groups.append(g)
    return groups


def unreadable(path: Path, exc: Exception) -> StoreError:
    """The store's error for a file it cannot read."""
    return StoreError(f"{path}: expected a readable Parquet file of the fact store. {exc}")


def _rows_of(path: Path, keys: EncryptionKeys | None, rows: np.ndarray) -> pa.Table:
    """The rows at ``rows`` (sorted positions) of a Parquet file, reading only the row
    groups that hold them."""
    handle = pq.ParquetFile(parquet_source(path, keys))
    sizes = np.array(
        [handle.metadata.row_group(i).num_rows for i in range(handle.num_row_groups)],
        dtype=np.int64,
    )
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    table = handle.read_row_groups([int(g) for g in groups])
    # Positions of the wanted rows inside the concatenated groups read.
    offsets = np.concatenate([[0], np.cumsum(sizes[groups])])
    group_of = np.searchsorted(starts, rows, side="right") - 1
    local = offsets[np.searchsorted(groups, group_of)] + (rows - starts[group_of])
    return table.take(pa.array(local))


def read_filtered(path: Path, customer_id: str, keys: EncryptionKeys | None) -> pd.DataFrame:
    """One customer's rows of a store file (Parquet filters skip other row groups).

    Raises:
        StoreError: The file cannot be read.
    """
    try:
        return pd.read_parquet(
            parquet_source(path, keys), filters=[("customer_id", "==", customer_id)]
        )
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{path}: expected a readable Parquet file of the fact store. {exc}"
        ) from exc


def read_store_parquet(
    path: Path, columns: list[str] | None = None, *, keys: EncryptionKeys | None = None
) -> pd.DataFrame:
    """A store file (some columns) as a DataFrame.

    Raises:
        StoreError: The file cannot be read.
    """
    try:
        return pd.read_parquet(parquet_source(path, keys), columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{path}: expected a readable Parquet file of the fact store. {exc}"
        ) from exc


# A file of a commit: a table, or a function writing the file itself (spilled events).
FileSource: TypeAlias = pa.Table | Callable[[Path], object]


def write_store_file(
    table: FileSource,
    tmp: Path,
    keys: EncryptionKeys | None,
    row_group_size: int,
    encoding: dict[str, Any],
) -> str:
    """Write one Parquet file of a fact store to ``tmp`` (``table``, or a function that
    writes the file itself: an import's spilled events); the file's sha256."""
    if callable(table):
        table(tmp)
    else:
        write_parquet(
            table, tmp, keys, compression="zstd", row_group_size=row_group_size, **encoding
        )
    return file_sha256(tmp)
