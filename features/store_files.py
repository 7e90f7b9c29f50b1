"""File-level helpers of the fact store: sorting events for a file, the manifest's
counts (whole or added to the previous ones), and finding the stored events that can
duplicate new ones without decoding every stored row.
"""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["manifest_counts", "matching_events", "sorted_events"]


def sorted_events(events: pd.DataFrame | pa.Table) -> pa.Table:
    """Canonical events as an Arrow table sorted by customer and time.

    Raises:
        StoreError: An Arrow table does not have exactly the canonical columns.
    """
    if isinstance(events, pd.DataFrame):
        events = arrow_table(check_events(events))
    elif events.schema.names != list(EVENT_COLUMNS):
        raise StoreError(
            f"Expected event columns {list(EVENT_COLUMNS)}. Got {events.schema.names}."
        )
    return events.sort_by([("customer_id", "ascending"), ("occurred_at", "ascending")])


def manifest_counts(events: pa.Table, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Event count, time span and per-type counts of ``events``, added to ``previous``
    (the manifest of the content they extend) when given."""
    span = pc.min_max(events["occurred_at"]).as_py() if events.num_rows else {}
    first, last = span.get("min"), span.get("max")
    types: dict[str, int] = {}
    for c in pc.value_counts(events["event_type"]).to_pylist():
        types[str(c["values"])] = int(c["counts"])
    total = events.num_rows
    if previous:
        total += int(previous.get("events", 0))
        for name, n in previous.get("event_types", {}).items():
            types[name] = types.get(name, 0) + int(n)
        times = [pd.Timestamp(t) for t in (first, last) if t is not None]
        times += [
            pd.Timestamp(previous[k])
            for k in ("first_event_at", "last_event_at")
            if previous.get(k)
        ]
        first = min(times) if times else None
        last = max(times) if times else None
    return {
        "events": total,
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
