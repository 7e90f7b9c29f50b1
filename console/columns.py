"""Tag snapshots held in memory as columns: per tag, one value code per customer.

Opening the tag store (DuckDB) costs tens of milliseconds and scanning it for one
customer hundreds, at a million customers; a page has 150 ms in all. So the console
loads each recent snapshot once, in the background, as one small integer code per
customer and tag (``-1``: no row) plus the scores of scored tags, aligned on one sorted
index of customer ids. One customer's tags over time are then array lookups, and an
audience's columns are built from codes without a pivot query.

Loading groups the snapshot's rows by (tag, value, source, version) in DuckDB and
fetches, per group, the positions and scores of its customers: a few dozen rows of
lists instead of millions of strings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "CustomerIndex",
    "SnapshotColumns",
    "TagColumn",
    "audience_frame",
    "customer_rows",
    "load_index",
    "load_snapshot",
]

NO_ROW = -1
_HISTORY_COLUMNS = ["tag_id", "value", "score", "source", "version", "as_of"]


@dataclass(frozen=True)
class CustomerIndex:
    """Every customer of the loaded snapshots, sorted; a customer's position is its row.

    Attributes:
        ids: Customer ids as an Arrow string array, sorted.
        objects: The same ids as a numpy object array (binary search).
    """

    ids: pa.Array
    objects: np.ndarray

    @classmethod
    def of(cls, ids: pa.Array) -> CustomerIndex:
        """The index of sorted, distinct ``ids``."""
        return cls(ids=ids, objects=ids.to_numpy(zero_copy_only=False))

    def __len__(self) -> int:
        return len(self.objects)

    def position(self, customer_id: str) -> int | None:
        """Row of ``customer_id`` (``None`` when no loaded snapshot has it)."""
        i = int(np.searchsorted(self.objects, customer_id))
        if i < len(self.objects) and self.objects[i] == customer_id:
            return i
        return None


@dataclass(frozen=True)
class TagColumn:
    """One tag of one snapshot.

    Attributes:
        codes: Per customer position, the value's code (``-1``: no row), int16.
        values: Code -> value.
        scores: Per position, the row's score (NaN: none); ``None`` when no row has one.
        source: fact, rule or model.
        version: The version the run recorded (``rule@1``, ``churn-predictor/3``); the
            most frequent one if the rows disagree.
    """

    codes: np.ndarray
    values: np.ndarray
    scores: np.ndarray | None
    source: str
    version: str


@dataclass(frozen=True)
class SnapshotColumns:
    """One snapshot in memory.

    Attributes:
        as_of: Its as-of date.
        run_id: The run that wrote it.
        present: Per position, whether the customer has any row in it.
        tags: Tag id -> its column.
    """

    as_of: pd.Timestamp
    run_id: str
    present: np.ndarray
    tags: Mapping[str, TagColumn] = field(default_factory=dict)

    def realigned(self, old: CustomerIndex, new: CustomerIndex) -> SnapshotColumns:
        """The same snapshot on a new (larger or smaller) customer index."""
        keep = np.isin(old.objects, new.objects)
        target = np.searchsorted(new.objects, old.objects[keep])

        def move(values: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full(len(new), fill, dtype=values.dtype)
            out[target] = values[keep]
            return out

        tags = {
            t: TagColumn(
                codes=move(c.codes, NO_ROW),
                values=c.values,
                scores=None if c.scores is None else move(c.scores, np.nan),
                source=c.source,
                version=c.version,
            )
            for t, c in self.tags.items()
        }
        return SnapshotColumns(self.as_of, self.run_id, move(self.present, False), tags)


def load_index(con: duckdb.DuckDBPyConnection, dates: Sequence[pd.Timestamp]) -> CustomerIndex:
    """Sorted distinct customer ids of the snapshots of ``dates``."""
    table = _arrow(
        con,
        "SELECT DISTINCT customer_id FROM snapshots WHERE list_contains(?, as_of) "
        "ORDER BY customer_id",
        [[_naive(d) for d in dates]],
    )
    return CustomerIndex.of(table["customer_id"].combine_chunks().cast(pa.string()))


_GROUPS_SQL = """
SELECT s.tag_id, s.value, s.source, coalesce(s.version, '') AS version,
       list({'p': i.pos, 's': s.score}) AS rows
FROM snapshots s JOIN console_index i ON i.customer_id = s.customer_id
WHERE s.as_of = ?
GROUP BY ALL
ORDER BY s.tag_id, s.value
"""


def load_snapshot(
    con: duckdb.DuckDBPyConnection, index: CustomerIndex, as_of: pd.Timestamp, run_id: str
) -> SnapshotColumns:
    """One snapshot as columns on ``index`` (every customer of it must be in the index)."""
    positions = pa.array(np.arange(len(index), dtype=np.int32))
    con.register("console_index", pa.table({"customer_id": index.ids, "pos": positions}))
    try:
        groups = _arrow(con, _GROUPS_SQL, [_naive(as_of)])
    finally:
        con.unregister("console_index")
    n = len(index)
    present = np.zeros(n, dtype=bool)
    parts: dict[str, list[tuple[str, str, str, np.ndarray, np.ndarray]]] = {}
    rows = groups["rows"].combine_chunks()
    for k in range(groups.num_rows):
        cell = rows[k].values
        pos = cell.field("p").to_numpy(zero_copy_only=False)
        score = cell.field("s").to_numpy(zero_copy_only=False).astype(np.float64)
        key = (str(groups["value"][k]), str(groups["source"][k]), str(groups["version"][k]))
        parts.setdefault(str(groups["tag_id"][k]), []).append((*key, pos, score))
    tags: dict[str, TagColumn] = {}
    for tag_id, items in parts.items():
        values = np.array([v for v, *_ in items], dtype=object)
        codes = np.full(n, NO_ROW, dtype=np.int16)
        scores = np.full(n, np.nan)
        sources: dict[str, int] = {}
        versions: dict[str, int] = {}
        for code, (_, source, version, pos, score) in enumerate(items):
            codes[pos] = code
            scores[pos] = score
            present[pos] = True
            sources[source] = sources.get(source, 0) + len(pos)
            versions[version] = versions.get(version, 0) + len(pos)
        tags[tag_id] = TagColumn(
            codes=codes,
            values=values,
            scores=scores if np.isfinite(scores).any() else None,
            source=max(sources, key=lambda s: sources[s]),
            version=max(versions, key=lambda v: versions[v]),
        )
    return SnapshotColumns(as_of=as_of, run_id=run_id, present=present, tags=tags)


def _arrow(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> pa.Table:
    """A query's result as an Arrow table (``sql`` fetches it without an extra copy)."""
    table: pa.Table = con.sql(query, params=params).to_arrow_table()
    return table


def _naive(ts: pd.Timestamp) -> Any:
    return pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).to_pydatetime()


def _strings(column: TagColumn | None, rows: np.ndarray) -> pd.Series:
    if column is None:
        return pd.Series(pd.array([pd.NA] * len(rows), dtype="string"))
    codes = column.codes[rows]
    missing = codes < 0
    decoded = pa.DictionaryArray.from_arrays(
        pa.array(np.where(missing, 0, codes).astype(np.int32), mask=missing),
        pa.array(list(column.values), type=pa.string()),
    ).dictionary_decode()
    return pd.Series(pd.array(decoded, dtype="string"))


def audience_frame(
    snapshot: SnapshotColumns, index: CustomerIndex, kinds: Mapping[str, tuple[str, str]]
) -> pd.DataFrame:
    """One row per customer of the snapshot, one column per tag, sorted by id.

    The columns ``tags.segments`` builds with ``TagStore.wide`` for every tag: boolean
    tags as bool (no row: False), other tags as strings (no row: NA), and
    ``<tag>_score`` (float, NaN when none) for score and model tags.

    Args:
        snapshot: The snapshot.
        index: Its customer index.
        kinds: Tag id -> (value type, source) of every catalogued tag.
    """
    rows = np.flatnonzero(snapshot.present)
    data: dict[str, Any] = {
        "customer_id": pd.Series(pd.array(index.ids.take(pa.array(rows)), dtype="str"))
    }
    for tag_id in sorted(kinds):
        value_type, _ = kinds[tag_id]
        column = snapshot.tags.get(tag_id)
        if value_type == "boolean":
            data[tag_id] = (
                column.codes[rows] >= 0 if column is not None else np.zeros(len(rows), bool)
            )
        else:
            data[tag_id] = _strings(column, rows)
    for tag_id in sorted(kinds):
        value_type, source = kinds[tag_id]
        if value_type == "score" or source == "model":
            column = snapshot.tags.get(tag_id)
            scores = column.scores if column is not None else None
            data[f"{tag_id}_score"] = (
                scores[rows] if scores is not None else np.full(len(rows), np.nan)
            )
    return pd.DataFrame(data)


def customer_rows(
    snapshots: Sequence[SnapshotColumns],
    index: CustomerIndex,
    customer_id: str,
    tags: Collection[str],
) -> pd.DataFrame:
    """One customer's rows in every loaded snapshot: tag_id, value, score, source,
    version, as_of (what ``TagStore.history`` returns, from memory)."""
    pos = index.position(customer_id)
    out: list[dict[str, Any]] = []
    if pos is not None:
        for snap in snapshots:
            for tag_id in sorted(tags):
                column = snap.tags.get(tag_id)
                if column is None or column.codes[pos] < 0:
                    continue
                score = None if column.scores is None else float(column.scores[pos])
                out.append(
                    {
                        "tag_id": tag_id,
                        "value": str(column.values[column.codes[pos]]),
                        "score": None if score is None or np.isnan(score) else score,
                        "source": column.source,
                        "version": column.version,
                        "as_of": snap.as_of,
                    }
                )
    return pd.DataFrame(out, columns=_HISTORY_COLUMNS)
