"""The newest batch snapshot held in memory, looked up by customer, for live writes.

A live write records a transition for every (customer, tag) whose value changes, so it
needs the customers' current values: their live rows, else the newest snapshot's rows.
Reading those snapshot rows from DuckDB for a handful of customers scans the whole
snapshot (millions of rows at a million customers: the fixed cost that made every
micro-batch take about a second whatever its size). A snapshot never changes once
written, so a real-time writer loads it once (:meth:`NewestSnapshot.load`) and
:func:`tags.live.write_live` takes its rows from memory instead.

The memory copy names the snapshot it holds (:func:`snapshot_key`: the newest succeeded
run, its as-of date and the store's erasure count). ``write_live`` compares that key
with the store's inside its own transaction and reads the table instead when they
differ (a batch run or an erasure landed since), so a stale copy costs time, never a
wrong transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["NewestSnapshot", "SnapshotKey", "snapshot_key"]

SnapshotKey = tuple[str, datetime, str]

_NEWEST = (
    "SELECT run_id, as_of, (SELECT value FROM store_meta WHERE key = 'erasures') "
    "FROM runs WHERE status = 'succeeded' ORDER BY as_of DESC, finished_at DESC LIMIT 1"
)


def snapshot_key(con: duckdb.DuckDBPyConnection) -> SnapshotKey | None:
    """(run id, as-of, erasure count) of the newest succeeded snapshot (None: no run)."""
    rows = con.execute(_NEWEST).fetchall()
    if not rows:
        return None
    row = rows[0]
    return str(row[0]), row[1], str(row[2] or "0")


@dataclass(frozen=True)
class NewestSnapshot:
    """One snapshot's rows grouped by customer, customers sorted for binary search.

    Attributes:
        key: Which snapshot this is (:func:`snapshot_key`).
        ids: The snapshot's customers, sorted (object array of str).
        starts: Per customer of ``ids``, its first row in ``table``.
        ends: Per customer, one past its last row.
        table: ``tag_id`` and ``value`` of every row (dictionary-encoded: few distinct).
    """

    key: SnapshotKey
    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    table: pa.Table

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> NewestSnapshot | None:
        """Read the newest snapshot (None: no succeeded run yet)."""
        key = snapshot_key(con)
        if key is None:
            return None
        table = con.sql(
            "SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = $as_of "
            "ORDER BY customer_id, tag_id",
            params={"as_of": key[1]},
        ).to_arrow_table()
        ids_column = table["customer_id"].combine_chunks()
        if len(ids_column):
            runs = pc.run_end_encode(ids_column)
            ends = runs.run_ends.to_numpy().astype(np.int64)
            ids = np.asarray(runs.values.to_pylist(), dtype=object)
        else:
            ends = np.zeros(0, dtype=np.int64)
            ids = np.zeros(0, dtype=object)
        starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
        # DuckDB orders strings by bytes, Python by code points: the same order for UTF-8,
        # but binary search must not depend on it silently.
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, starts, ends = ids[order], starts[order], ends[order]
        rest = pa.table(
            {
                "tag_id": pc.dictionary_encode(table["tag_id"].combine_chunks()),
                "value": pc.dictionary_encode(table["value"].combine_chunks()),
            }
        )
        snapshot = cls(key=key, ids=ids, starts=starts, ends=ends, table=rest)
        _ = snapshot.search_keys  # built now, not in the first live write
        return snapshot

    @property
    def rows(self) -> int:
        """Rows held."""
        return int(self.table.num_rows)

    @cached_property
    def search_keys(self) -> np.ndarray | None:
        """The ids as fixed-width UTF-8 bytes, sorted as the ids are (None: they are
        not, e.g. ids that differ only by trailing NULs; the search then compares the
        ids themselves).

        A binary search over a million Python strings compares objects (~30 ms per
        5,000 customers); over fixed-width bytes it is a memcmp in C. A hit is still
        confirmed on the ids themselves.
        """
        if len(self.ids) < 2:
            return None
        keys = np.asarray([str(i).encode() for i in self.ids], dtype=bytes)
        return keys if bool(np.all(keys[1:] > keys[:-1])) else None

    def _runs(self, customer_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions in ``customer_ids`` of the customers held, their row counts, the
        row numbers of all their rows in order)."""
        wanted = np.asarray([str(c) for c in customer_ids], dtype=object)
        hit = np.zeros(len(wanted), dtype=bool)
        pos = np.zeros(len(wanted), dtype=np.int64)
        keys = self.search_keys
        if keys is not None and len(wanted):
            # Longer ids are cut to the width: at worst a false candidate, refused below.
            pos = np.searchsorted(keys, np.asarray([c.encode() for c in wanted], keys.dtype))
        elif len(self.ids) and len(wanted):
            pos = np.searchsorted(self.ids, wanted)
        if len(self.ids) and len(wanted):
            inside = pos < len(self.ids)
            hit[inside] = self.ids[pos[inside]] == wanted[inside]
        starts, ends = self.starts[pos[hit]], self.ends[pos[hit]]
        lengths = ends - starts
        # Row numbers of every hit customer's run, without a Python loop per customer.
        index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        index = index + np.arange(int(lengths.sum()), dtype=np.int64)
        return np.flatnonzero(hit), lengths, index

    def place(self, customer_ids: Sequence[str], tags: Sequence[str], out: np.ndarray) -> None:
        """Put the snapshot value of each (customer, tag of ``tags``) into ``out``, a
        customer-major object array over ``tags`` (``None`` stays where there is no
        row). Works on the dictionary codes: no string is made per row."""
        held, lengths, index = self._runs(customer_ids)
        if not len(index):
            return
        taken = self.table.take(pa.array(index, type=pa.int64()))
        tag = taken["tag_id"].combine_chunks()
        value = taken["value"].combine_chunks()
        position = {t: j for j, t in enumerate(tags)}
        slot = np.array([position.get(t, -1) for t in tag.dictionary.to_pylist()] + [-1])
        tag_codes = np.asarray(pc.fill_null(tag.indices, -1).to_numpy(zero_copy_only=False))
        slots = slot[tag_codes]
        words = np.array([*value.dictionary.to_pylist(), None], dtype=object)
        words = words[np.asarray(pc.fill_null(value.indices, -1).to_numpy(zero_copy_only=False))]
        owner = np.repeat(held, lengths)
        keep = np.flatnonzero(slots >= 0)
        out[owner[keep] * len(tags) + slots[keep]] = words[keep]

    def rows_of(self, customer_ids: Sequence[str]) -> pa.Table:
        """The snapshot rows (``customer_id, tag_id, value``: strings) of the customers."""
        wanted = np.asarray([str(c) for c in customer_ids], dtype=object)
        held, lengths, index = self._runs(customer_ids)
        taken = self.table.take(pa.array(index, type=pa.int64()))
        return pa.table(
            {
                "customer_id": pa.array(np.repeat(wanted[held], lengths), type=pa.string()),
                "tag_id": taken["tag_id"].cast(pa.string()),
                "value": taken["value"].cast(pa.string()),
            }
        )
