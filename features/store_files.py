"""File-level helpers of the fact store: sorting events for a file, the manifest's
counts (whole or added to the previous ones), and finding the stored events that can
duplicate new ones without decoding every stored row.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.crypto import EncryptionKeys, parquet_source, read_parquet, read_parquet_schema
from features.errors import StoreError
from features.schema import EVENT_COLUMNS, arrow_table, check_events

__all__ = [
    "EVENT_ENCODING",
    "canonical_events",
    "customer_time_order",
    "manifest_counts",
    "matching_events",
    "merge_counts",
    "read_filtered",
    "read_store_parquet",
    "sorted_events",
]

# Dictionary pages only for the columns with few distinct values: for ids, times and
# amounts Parquet builds a dictionary, outgrows it and falls back to plain pages. At
# 1.5M events this writes in 0.30 s instead of 0.47 s, and 15 MiB instead of 19 MiB.
EVENT_ENCODING: dict[str, Any] = {
    "use_dictionary": ["event_type", "category", "product_id", "quantity"]
}

# Columns are gathered on both cores: Arrow's take releases the GIL, and the gather of
# the text columns is the larger half of sorting an import's events.
_TAKE_WORKERS = 2


def sorted_events(events: pd.DataFrame | pa.Table) -> pa.Table:
    """Canonical events as an Arrow table sorted by customer and time.

    Raises:
        StoreError: An Arrow table does not have exactly the canonical columns.
    """
    events = canonical_events(events)
    order = customer_time_order(events)
    if order is None:
        return events
    rows = pa.array(order)
    with ThreadPoolExecutor(_TAKE_WORKERS, thread_name_prefix="tagsmith-sort") as pool:
        columns = list(pool.map(lambda column: column.take(rows), events.columns))
    return pa.Table.from_arrays(columns, schema=events.schema)


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
    rank = _int64(pc.index_in(ids, value_set=distinct))
    micros = _int64(times.cast(pa.int64()))
    step = np.diff(rank)
    if int(step.min()) >= 0 and not np.any((step == 0) & (np.diff(micros) < 0)):
        return None
    del step
    order = _packed_order(rank, micros)
    return order if order is not None else np.lexsort((micros, rank))


def _packed_order(rank: np.ndarray, micros: np.ndarray) -> np.ndarray | None:
    """Stable order by (rank, time) through one sort of int64 keys, or ``None`` when
    rank and time do not fit in 63 bits (microseconds, or whole seconds when every time
    is one)."""
    rel = micros - micros.min()
    rank_bits = int(rank.max()).bit_length()
    if rank_bits + int(rel.max()).bit_length() > 63:
        rel, fraction = np.divmod(rel, 1_000_000)
        if fraction.any() or rank_bits + int(rel.max()).bit_length() > 63:
            return None
    key = (rank << int(rel.max()).bit_length()) | rel
    del rel
    order = np.argsort(key)
    key = key[order]
    tie = key[1:] == key[:-1]
    if tie.any():
        # Equal keys (same customer, same time) go back to file order, as a stable sort
        # leaves them: group number and row position packed in one int64 and sorted.
        group = np.concatenate([[0], np.cumsum(~tie)])
        row_bits = max(int(len(order) - 1).bit_length(), 1)
        packed = (group << row_bits) | order
        packed.sort()
        order = packed & ((1 << row_bits) - 1)
    return order


def _arrow_order(events: pa.Table) -> np.ndarray:
    return pc.sort_indices(
        events, [("customer_id", "ascending"), ("occurred_at", "ascending")]
    ).to_numpy()


def _int64(values: pa.ChunkedArray) -> np.ndarray:
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
    """Events of ``paths`` whose ``(customer_id, occurred_at)`` pair is in ``wanted``.

    The two key columns of every file are read and matched first; whole rows are then
    read only from the row groups holding a match, so checking a day's events against a
    year of history does not decode the year.

    Raises:
        StoreError: A file cannot be read.
    """
    parts = []
    with duckdb.connect() as con:
        con.register("wanted", wanted.select(["customer_id", "occurred_at"]))
        for path in paths:
            try:
                stored = read_parquet(path, keys, columns=["customer_id", "occurred_at"])
                numbered = stored.append_column(
                    "_row", pa.array(np.arange(stored.num_rows, dtype=np.int64))
                )
                con.register("stored_keys", numbered)
                rows = con.execute(
                    "SELECT _row FROM stored_keys s SEMI JOIN wanted w ON "
                    "s.customer_id = w.customer_id AND s.occurred_at = w.occurred_at "
                    "ORDER BY _row"
                ).fetchnumpy()["_row"]
                con.unregister("stored_keys")
                if len(rows):
                    parts.append(_rows_of(path, keys, np.asarray(rows, dtype=np.int64)))
            except (OSError, pa.ArrowException, duckdb.Error) as exc:
                raise StoreError(
                    f"{path}: expected a readable Parquet file of the fact store. {exc}"
                ) from exc
    if not parts:
        return read_parquet_schema(paths[0], keys).empty_table()
    schema = parts[0].schema
    return pa.concat_tables([t.cast(schema) for t in parts])


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
