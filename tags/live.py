"""Live tag values in the tag store: what real-time tagging wrote since the last batch run.

The batch snapshot holds every customer's tags as of its date; real-time tagging
re-tags the customers that events touch and writes their new values here, one row per
(customer, tag it evaluated), with ``value`` NULL where the tag no longer applies. The
current value of a (customer, tag) is its live row when there is one, else the newest
snapshot's row. Each live write records the changes it makes as one transition group
(``source = 'live'``, :func:`tags.transitions.record_transitions`) in the same
transaction, so triggers fire from live changes exactly as from batch runs.

A batch run reconciles: its snapshot replaces the live rows (batch wins), and the
number of live values it overrode is recorded with the run.

Every live write takes the next value of one sequence (``seq``), so a reader (the
service) picks up what is new since its last look with ``seq > cursor``.

A live write also records, in the same transaction, the live event segments whose
customers it re-tagged (``live_segments``). Events are stored before they are tagged, so
a process killed in between leaves a segment stored but not tagged; the next tagger to
start finds it (:func:`tagged_segments`) and re-tags its customers, whether or not the
batch is ever delivered again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import duckdb
import pandas as pd
import pyarrow as pa

from tags.errors import TagStoreError
from tags.live_snapshot import NewestSnapshot, snapshot_key
from tags.store_format import TAG_COLUMNS, utc_columns
from tags.transitions import TransitionGroup, record_transitions

__all__ = [
    "LIVE_COLUMNS",
    "LIVE_SCHEMA",
    "LiveWrite",
    "latest_run",
    "live_rows",
    "mark_tagged",
    "reconcile_live",
    "tagged_segments",
    "write_live",
]

LIVE_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS live_seq START 1;
CREATE TABLE IF NOT EXISTS live_tags (
    customer_id VARCHAR NOT NULL,
    tag_id VARCHAR NOT NULL,
    value VARCHAR,
    score DOUBLE,
    source VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS live_segments (
    segment VARCHAR PRIMARY KEY,
    tagged_at TIMESTAMP NOT NULL
);
"""

LIVE_COLUMNS: tuple[str, ...] = (*TAG_COLUMNS, "updated_at", "seq")


@dataclass(frozen=True)
class LiveWrite:
    """What one live write did.

    Attributes:
        seq: The write's sequence number (every row it wrote carries it).
        group: The transition group it recorded (``n``: tag values that changed).
        customers: Customers re-tagged.
        rows: Live rows written (including NULL values of tags that no longer apply).
        snapshot_in_memory: The newest snapshot's values came from the caller's memory
            copy (False: it was missing or stale, the table was read).
    """

    seq: int
    group: TransitionGroup
    customers: int
    rows: int
    snapshot_in_memory: bool = False


# The current value of each (customer, tag) of the written customers, for the evaluated
# tags: the live row when present, else the newest snapshot's row.
_CURRENT = """
SELECT coalesce(l.customer_id, s.customer_id) AS customer_id,
       coalesce(l.tag_id, s.tag_id) AS tag_id,
       CASE WHEN l.customer_id IS NOT NULL THEN l.value ELSE s.value END AS value
FROM (
    SELECT customer_id, tag_id, value FROM ({snapshot}) newest
    WHERE customer_id IN (SELECT customer_id FROM live_customers)
      AND tag_id IN (SELECT tag_id FROM live_scope)
) s
FULL OUTER JOIN (
    SELECT customer_id, tag_id, value FROM live_tags
    WHERE customer_id IN (SELECT customer_id FROM live_customers)
      AND tag_id IN (SELECT tag_id FROM live_scope)
) l ON l.customer_id = s.customer_id AND l.tag_id = s.tag_id
"""


def write_live(
    con: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    *,
    customers: Sequence[str],
    tags: Sequence[str],
    at: datetime,
    snapshot: NewestSnapshot | None = None,
    segments: Sequence[str] = (),
) -> LiveWrite:
    """Replace the live values of ``customers`` for ``tags`` with ``rows``; record changes.

    Runs in its own transaction on ``con`` (a writing connection of the tag store).

    Args:
        con: Writing connection (schema created).
        rows: Long tag rows of the re-tagged customers (:data:`TAG_COLUMNS`), at most one
            per customer and tag; every row's tag must be in ``tags``.
        customers: The re-tagged customers (those without rows lose every tag of ``tags``).
        tags: The tags evaluated (others keep their values).
        at: Time of the write (naive UTC): the transitions' time and ``updated_at``.
        snapshot: The newest snapshot in memory (:mod:`tags.live_snapshot`): used when
            it is still the store's newest (checked in this transaction), else the
            snapshots table is read.
        segments: Live event segments whose every customer is among ``customers``:
            recorded as tagged in the same transaction (:func:`tagged_segments`).

    Raises:
        TagStoreError: A row names a tag outside ``tags`` or repeats a (customer, tag).
    """
    frame = rows[list(TAG_COLUMNS)].copy() if len(rows) else _empty_rows()
    for name in ("customer_id", "tag_id", "value", "source", "version"):
        frame[name] = frame[name].astype("string")
    stray = sorted(set(frame["tag_id"].dropna()) - set(tags))
    if stray:
        raise TagStoreError(f"Expected live rows for the evaluated tags {list(tags)}. Got {stray}.")
    if frame.duplicated(["customer_id", "tag_id"]).any():
        raise TagStoreError("Expected at most one live row per customer and tag. Got repeats.")
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True).dt.tz_localize(None)
    con.register("live_in", pa.Table.from_pandas(frame, preserve_index=False))
    con.register(
        "live_customers", pa.table({"customer_id": pa.array(list(customers), pa.string())})
    )
    con.register("live_scope", pa.table({"tag_id": pa.array(list(tags), pa.string())}))
    try:
        con.begin()
        try:
            row = con.execute("SELECT nextval('live_seq')").fetchone()
            seq = int(row[0]) if row else 0
            key = snapshot_key(con)
            cached = snapshot is not None and key is not None and snapshot.key == key
            if cached and snapshot is not None:
                con.register("live_snapshot", snapshot.rows_of(customers))
                from_snapshot = "SELECT customer_id, tag_id, value FROM live_snapshot"
            else:
                # The newest snapshot's date as a constant, not a subquery: DuckDB then
                # skips the row groups of older snapshots by their min/max.
                from_snapshot = (
                    "SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = $snapshot_as_of"
                )
            # Every (customer, evaluated tag): the new value, NULL where none applies.
            con.execute(
                "CREATE TEMP TABLE live_new AS SELECT c.customer_id, t.tag_id, i.value, i.score, "
                "coalesce(i.source, 'rule') AS source, coalesce(i.version, '') AS version, "
                "coalesce(i.as_of, $at) AS as_of FROM live_customers c CROSS JOIN live_scope t "
                "LEFT JOIN live_in i ON i.customer_id = c.customer_id AND i.tag_id = t.tag_id",
                {"at": at},
            )
            current = _CURRENT.format(snapshot=from_snapshot)
            group = record_transitions(
                con,
                "SELECT coalesce(a.customer_id, b.customer_id) AS customer_id, "  # noqa: S608
                "coalesce(a.tag_id, b.tag_id) AS tag_id, a.value AS from_value, "
                f"b.value AS to_value FROM ({current}) a FULL OUTER JOIN live_new b "
                "ON a.customer_id = b.customer_id AND a.tag_id = b.tag_id "
                "WHERE a.value IS DISTINCT FROM b.value",
                group_id=f"live-{uuid.uuid4().hex[:16]}",
                at=at,
                params={} if cached else {"snapshot_as_of": key[1] if key else None},
            )
            con.execute(
                "DELETE FROM live_tags WHERE customer_id IN (SELECT customer_id FROM "
                "live_customers) AND tag_id IN (SELECT tag_id FROM live_scope)"
            )
            con.execute(
                "INSERT INTO live_tags SELECT customer_id, tag_id, value, score, source, "
                "version, as_of, $at, $seq FROM live_new",
                {"at": at, "seq": seq},
            )
            row = con.execute("SELECT count(*) FROM live_new").fetchone()
            con.execute("DROP TABLE live_new")
            _mark(con, segments, at)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        for name in ("live_in", "live_customers", "live_scope", "live_snapshot"):
            con.unregister(name)
    return LiveWrite(
        seq=seq,
        group=group,
        customers=len(customers),
        rows=int(row[0]) if row else 0,
        snapshot_in_memory=cached,
    )


def _mark(con: duckdb.DuckDBPyConnection, segments: Sequence[str], at: datetime) -> None:
    if segments:
        con.executemany(
            "INSERT OR IGNORE INTO live_segments VALUES (?, ?)", [[s, at] for s in segments]
        )


def mark_tagged(con: duckdb.DuckDBPyConnection, segments: Sequence[str], *, at: datetime) -> None:
    """Record ``segments`` as tagged without a live write (their customers are gone).

    Args:
        con: Writing connection (schema created).
        segments: Segment file names.
        at: Time of the record (naive UTC).
    """
    _mark(con, segments, at)


def tagged_segments(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the live event segments whose customers a live write re-tagged."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'live_segments'"
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    return {str(r[0]) for r in con.execute("SELECT segment FROM live_segments").fetchall()}


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="string"),
            "tag_id": pd.Series([], dtype="string"),
            "value": pd.Series([], dtype="string"),
            "score": pd.Series([], dtype="float64"),
            "source": pd.Series([], dtype="string"),
            "version": pd.Series([], dtype="string"),
            "as_of": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )


def reconcile_live(con: duckdb.DuckDBPyConnection, incoming: str, *, as_of: datetime) -> int:
    """Drop every live row before a batch snapshot replaces them (batch wins).

    Called inside the batch run's transaction, before its snapshot is written. A
    backfill (older than the newest snapshot) leaves live rows alone.

    Returns:
        Live values the batch overrode: (customer, tag) pairs whose live value differs
        from the run's.
    """
    newer = con.execute(
        "SELECT count(*) FROM runs WHERE status = 'succeeded' AND as_of > ?", [as_of]
    ).fetchone()
    if newer and newer[0]:
        return 0
    row = con.execute(
        "SELECT count(*) FROM live_tags l LEFT JOIN "  # noqa: S608 (fixed SQL)
        f"(SELECT customer_id, tag_id, value FROM {incoming}) b "
        "ON b.customer_id = l.customer_id AND b.tag_id = l.tag_id "
        "WHERE l.value IS DISTINCT FROM b.value"
    ).fetchone()
    con.execute("DELETE FROM live_tags")
    return int(row[0]) if row else 0


def live_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    after_seq: int = 0,
    customers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Live rows (:data:`LIVE_COLUMNS`) written after ``after_seq``, by customer and tag.

    Rows with a NULL ``value`` mean the tag no longer applies to the customer.
    """
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'live_tags'"
    ).fetchone()
    if not exists or not exists[0]:
        empty = _empty_rows()
        empty["updated_at"] = pd.Series([], dtype="datetime64[us, UTC]")
        empty["seq"] = pd.Series([], dtype="int64")
        return empty
    where = "seq > ?"
    params: list[Any] = [int(after_seq)]
    if customers is not None:
        where += " AND list_contains(?, customer_id)"
        params.append(list(customers))
    df = con.execute(
        f"SELECT {', '.join(LIVE_COLUMNS)} FROM live_tags WHERE {where} "  # noqa: S608
        "ORDER BY customer_id, tag_id",
        params,
    ).df()
    return utc_columns(df, ["as_of", "updated_at"])


class _Readable(Protocol):
    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


def latest_run(store: _Readable) -> tuple[str, dict[str, Any]] | None:
    """(run id, meta) of the newest succeeded batch run, in one read (None: no run yet)."""
    with store.reader() as con:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'"
        ).fetchone()
        if not exists or not exists[0]:
            return None
        row = con.execute(
            "SELECT run_id, meta FROM runs WHERE status = 'succeeded' "
            "ORDER BY as_of DESC, finished_at DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    meta = json.loads(row[1]) if isinstance(row[1], str) and row[1] else {}
    return str(row[0]), meta
