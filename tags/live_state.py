"""The current live values of a real-time writer, held in memory.

Live writes are append-only (:func:`tags.live.write_live`): each re-tag of a customer
adds rows with a new sequence number and never deletes the rows it supersedes, so a
(customer, tag) may have several live rows, the one with the highest ``seq`` current.
To record a transition a write needs the current values of the customers it re-tags;
reading them back from the table per write (a join against every live row) was most
of a micro-batch's fixed cost. A writer keeps them here instead.

:meth:`LiveState.sync`, called inside each write's transaction, keeps the copy exact:

- when the newest snapshot's key changed (a batch run reconciled, deleting every live
  row; an erasure deleted some), the copy is rebuilt from the table;
- otherwise only rows with ``seq`` above the highest seen are read: those other
  processes (a stream consumer beside the service) wrote since. Seqs grow in insertion
  order, so DuckDB reads only the row groups they are in.

The state is updated only after the write's transaction committed
(:meth:`LiveState.record`), so a failed write leaves it as the table is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb
import numpy as np

from tags.live_snapshot import SnapshotKey

__all__ = ["LATEST_LIVE", "LiveState"]

# The current row of each (customer, tag) among appended live rows.
LATEST_LIVE = "QUALIFY row_number() OVER (PARTITION BY customer_id, tag_id ORDER BY seq DESC) = 1"


class LiveState:
    """Current live value of each (customer, tag) with a live row, by customer.

    Per customer the values are a tuple aligned to a tuple of tag ids shared by every
    customer written with the same tags (a million live customers of 25 tags take a
    few hundred MB, not the gigabytes of a dict per pair).

    Attributes:
        key: The snapshot key the copy belongs to (None: never synced).
        seq: The highest live ``seq`` the copy includes.
        superseded: Live rows appended since the last compaction that replaced an
            earlier live row of the same (customer, tag) (what compaction can delete).
    """

    def __init__(self) -> None:
        self.key: SnapshotKey | None = None
        self.seq = 0
        self.superseded = 0
        # Customers whose rows a write of this state superseded since the last compaction
        # (None: not known, every customer's rows are to be compacted: a fresh state).
        self._superseded_ids: set[str] | None = None
        self._values: dict[str, tuple[tuple[str, ...], tuple[str | None, ...]]] = {}
        self._tag_tuples: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def sync(self, con: duckdb.DuckDBPyConnection, key: SnapshotKey | None) -> None:
        """Bring the copy up to the table's state (inside the writer's transaction)."""
        if key != self.key:
            self._values.clear()
            self.key, self.seq, self.superseded = key, 0, 0
            self._superseded_ids = None
            rows = con.execute(
                f"SELECT customer_id, tag_id, value, seq FROM live_tags {LATEST_LIVE}"  # noqa: S608
            ).fetchall()
        else:
            rows = con.execute(
                "SELECT customer_id, tag_id, value, seq FROM live_tags WHERE seq > ? ORDER BY seq",
                [self.seq],
            ).fetchall()
        if rows:
            self._merge((str(c), str(t), v) for c, t, v, _ in rows)
            self.seq = max(self.seq, max(int(r[3]) for r in rows))

    def values_of(self, customer_id: str) -> dict[str, str | None] | None:
        """The customer's live values by tag (None: no live row; a None value: the tag
        no longer applies)."""
        held = self._values.get(customer_id)
        if held is None:
            return None
        return dict(zip(held[0], held[1], strict=True))

    def overlay(self, customers: Sequence[str], tags: Sequence[str], current: np.ndarray) -> None:
        """Put the live values of ``customers`` into ``current`` (a customer-major object
        array over ``tags``), where they have a live row for the tag: a live value wins
        over the snapshot's. A customer written with these very tags (the usual case)
        is one slice assignment, not a loop over its tags."""
        width = len(tags)
        key = tuple(tags)
        shared = self._tag_tuples.get(key)
        position: dict[str, int] | None = None
        for i, cid in enumerate(customers):
            held = self._values.get(cid)
            if held is None:
                continue
            if held[0] is shared or held[0] == key:
                current[i * width : (i + 1) * width] = held[1]
                continue
            if position is None:
                position = {t: j for j, t in enumerate(tags)}
            for tag, value in zip(held[0], held[1], strict=True):
                j = position.get(tag)
                if j is not None:
                    current[i * width + j] = value

    def record(
        self, customers: Sequence[str], tags: Sequence[str], values: Sequence[str | None], seq: int
    ) -> None:
        """A committed write of ``seq``: ``values`` per customer and tag, customer-major."""
        shared = self._shared(tuple(tags))
        width = len(shared)
        wanted = set(shared)
        for i, cid in enumerate(customers):
            mine = tuple(values[i * width : (i + 1) * width])
            before = self._values.get(cid)
            if before is not None:
                if self._superseded_ids is not None:
                    self._superseded_ids.add(cid)
                # Identity first: ``t in shared`` per tag is a scan of the tuple (O(tags^2)
                # per customer, ~0.15 s of a 5,000-customer write).
                self.superseded += (
                    width if before[0] is shared else len(wanted.intersection(before[0]))
                )
                if before[0] != shared:
                    merged = dict(zip(before[0], before[1], strict=True))
                    merged.update(zip(shared, mine, strict=True))
                    self._values[cid] = (self._shared(tuple(merged)), tuple(merged.values()))
                    continue
            self._values[cid] = (shared, mine)
        self.seq = max(self.seq, seq)

    def compaction_scope(self) -> list[str] | None:
        """The customers whose live rows the next compaction need read: those a write of
        this state superseded rows of since the last compaction; None: every customer's
        (no compaction since this state was built: rows another run of the process
        superseded are not known here)."""
        return None if self._superseded_ids is None else sorted(self._superseded_ids)

    def compacted(self) -> None:
        """The superseded rows of :meth:`compaction_scope` were deleted."""
        self.superseded = 0
        self._superseded_ids = set()

    def _merge(self, rows: Iterable[tuple[str, str, str | None]]) -> None:
        by_customer: dict[str, dict[str, str | None]] = {}
        for cid, tag, value in rows:
            by_customer.setdefault(cid, {})[tag] = value
        for cid, update in by_customer.items():
            before = self._values.get(cid)
            merged = dict(zip(before[0], before[1], strict=True)) if before else {}
            merged.update(update)
            self._values[cid] = (self._shared(tuple(merged)), tuple(merged.values()))

    def _shared(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        return self._tag_tuples.setdefault(tags, tags)
