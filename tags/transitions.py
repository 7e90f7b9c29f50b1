"""Tag transitions recorded in the tag store: who entered, left or changed a tag, in order.

Every writer of tag values records the changes it makes as rows of one ``transitions``
table, numbered by ``seq`` in commit order, in the same database transaction as the
values themselves. A batch run records the difference between the state before it (the
latest snapshot, overlaid with any live changes recorded after it) and its new
snapshot; a real-time writer records each live change. Each commit is one **group**
(``transition_groups``: the seq range it added, its source, run and time), so a reader
that remembers the last seq it processed (a cursor) can pick up exactly what is new,
whoever wrote it. Downstream consumers (``activation``: triggers and destinations)
read only this log and the state it implies; they never call the writers.

Rules of the log:

* ``seq`` grows by one per transition, in commit order (the tag store has one writing
  process at a time, and seqs are assigned inside the writing transaction).
* A group covers ``after_seq < seq <= last_seq``; an empty group has
  ``after_seq == last_seq``.
* A batch run whose as-of date is older than the newest snapshot (a backfill) records
  no transitions: it does not change the current state. The first snapshot records
  none either (there is no state before it to change from).
* ``from_value`` / ``to_value`` NULL means the customer had no row for the tag
  (boolean tags: false). Score changes without a value change are not transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import duckdb
import pandas as pd

__all__ = [
    "TRANSITIONS_SCHEMA",
    "TRANSITION_COLUMNS",
    "ReadableStore",
    "TransitionGroup",
    "TransitionLog",
    "record_batch_transitions",
    "record_transitions",
]

TRANSITIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS transitions (
    seq BIGINT PRIMARY KEY,
    customer_id VARCHAR NOT NULL,
    tag_id VARCHAR NOT NULL,
    from_value VARCHAR,
    to_value VARCHAR,
    change VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    source VARCHAR NOT NULL,
    group_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS transition_groups (
    group_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    run_id VARCHAR,
    after_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    as_of TIMESTAMP NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    note VARCHAR
);
"""

TRANSITION_COLUMNS: tuple[str, ...] = (
    "seq",
    "customer_id",
    "tag_id",
    "from_value",
    "to_value",
    "change",
    "as_of",
    "source",
    "group_id",
)


@dataclass(frozen=True)
class TransitionGroup:
    """One commit of transitions.

    Attributes:
        group_id: Unique id (a batch run's run id).
        source: ``batch`` or ``live``.
        run_id: The tagging run that wrote it (batch), else None.
        after_seq: Seqs of this group are greater than this ...
        last_seq: ... and at most this.
        n: Number of transitions.
        as_of: As-of date of the run (batch) or time of the change (live), UTC.
        note: Why a group is empty (``initial``, ``backfill``), else None.
    """

    group_id: str
    source: str
    run_id: str | None
    after_seq: int
    last_seq: int
    n: int
    as_of: pd.Timestamp
    note: str | None = None


def _naive_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _has(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def _last_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(last_seq), 0) FROM transition_groups").fetchone()
    return int(row[0]) if row else 0


def _current_base(con: duckdb.DuckDBPyConnection) -> tuple[datetime | None, int]:
    """(as-of of the newest snapshot, the last seq that snapshot already contains)."""
    row = con.execute(
        "SELECT r.as_of, g.last_seq FROM runs r LEFT JOIN transition_groups g "
        "ON g.run_id = r.run_id AND g.source = 'batch' "
        "WHERE r.status = 'succeeded' ORDER BY r.as_of DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None, 0
    return row[0], int(row[1]) if row[1] is not None else 0


# The current state of (customer, tag): the newest snapshot, overlaid with the last
# change recorded after that snapshot's own group (live changes). NULL value: absent.
_CURRENT_SQL = """
SELECT coalesce(o.customer_id, s.customer_id) AS customer_id,
       coalesce(o.tag_id, s.tag_id) AS tag_id,
       CASE WHEN o.customer_id IS NOT NULL THEN o.to_value ELSE s.value END AS value
FROM (SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = $as_of {snap_where}) s
FULL OUTER JOIN (
    SELECT customer_id, tag_id, to_value FROM transitions
    WHERE seq > $base {tr_where}
    QUALIFY row_number() OVER (PARTITION BY customer_id, tag_id ORDER BY seq DESC) = 1
) o ON o.customer_id = s.customer_id AND o.tag_id = s.tag_id
"""


def _append(
    con: duckdb.DuckDBPyConnection,
    changes: str,
    params: dict[str, Any],
    *,
    group_id: str,
    source: str,
    at: datetime,
    run_id: str | None,
    note: str | None,
) -> TransitionGroup:
    after = _last_seq(con)
    con.execute(
        "INSERT INTO transitions SELECT $after + row_number() OVER "  # noqa: S608 (fixed SQL)
        "(ORDER BY tag_id, customer_id), customer_id, tag_id, from_value, to_value, "
        "CASE WHEN from_value IS NULL THEN 'entered' WHEN to_value IS NULL THEN 'left' "
        f"ELSE 'changed' END, $at, $source, $group FROM ({changes}) c",
        {**params, "after": after, "at": at, "source": source, "group": group_id},
    )
    # ``seq > after`` first: seqs grow in insertion order, so DuckDB reads only the row
    # groups this insert added instead of the group_id column of the whole log.
    row = con.execute(
        "SELECT count(*) FROM transitions WHERE seq > ? AND group_id = ?", [after, group_id]
    ).fetchone()
    n = int(row[0]) if row else 0
    con.execute(
        "INSERT INTO transition_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [group_id, source, run_id, after, after + n, n, at, _naive_now(), note],
    )
    return TransitionGroup(
        group_id=group_id,
        source=source,
        run_id=run_id,
        after_seq=after,
        last_seq=after + n,
        n=n,
        as_of=pd.Timestamp(at, tz="UTC"),
        note=note,
    )


def record_transitions(
    con: duckdb.DuckDBPyConnection,
    changes: str,
    *,
    group_id: str,
    at: datetime,
    source: str = "live",
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
) -> TransitionGroup:
    """Append changes as one group, inside the caller's writing transaction.

    The entry point for writers other than the batch run (real-time tagging): write
    the new values and call this in the same transaction.

    Args:
        con: A writing connection with a transaction open.
        changes: Name (or SQL) of a relation with ``customer_id, tag_id, from_value,
            to_value``: one row per changed customer and tag (NULL = no row).
        group_id: Unique id of the group.
        at: Time of the change (naive UTC).
        source: ``live`` (default) or ``batch``.
        run_id: The run that wrote the values, if any.
        params: Named parameters (``$name``) of ``changes``.
    """
    relation = (
        changes
        if changes.lstrip().upper().startswith("SELECT")
        else f"SELECT customer_id, tag_id, from_value, to_value FROM {changes}"  # noqa: S608
    )
    return _append(
        con,
        relation,
        dict(params or {}),
        group_id=group_id,
        source=source,
        at=at,
        run_id=run_id,
        note=None,
    )


def record_batch_transitions(
    con: duckdb.DuckDBPyConnection, incoming: str, *, as_of: datetime, run_id: str
) -> TransitionGroup:
    """Record what a batch run changes, before its snapshot replaces the current state.

    Called inside the run's transaction, before the run's rows are written: compares
    the current state (newest snapshot plus later live changes) with ``incoming``.

    Args:
        con: The run's writing connection, transaction open.
        incoming: Name of the relation holding the run's rows
            (``customer_id, tag_id, value``).
        as_of: The run's as-of date (naive UTC).
        run_id: The run's id (also the group id).
    """
    latest, base = _current_base(con)
    kwargs: dict[str, Any] = {"group_id": run_id, "source": "batch", "at": as_of, "run_id": run_id}
    if latest is None:
        return _append(con, _EMPTY, {}, note="initial", **kwargs)
    if as_of < latest:
        return _append(con, _EMPTY, {}, note="backfill", **kwargs)
    current = _CURRENT_SQL.format(snap_where="", tr_where="")
    # Fixed SQL around the run's relation name.
    changes = (
        "SELECT coalesce(a.customer_id, b.customer_id) AS customer_id, "  # noqa: S608
        "coalesce(a.tag_id, b.tag_id) AS tag_id, a.value AS from_value, b.value AS to_value "
        f"FROM ({current}) a FULL OUTER JOIN (SELECT customer_id, tag_id, value FROM {incoming}) b "
        "ON a.customer_id = b.customer_id AND a.tag_id = b.tag_id "
        "WHERE a.value IS DISTINCT FROM b.value"
    )
    return _append(con, changes, {"as_of": latest, "base": base}, note=None, **kwargs)


_EMPTY = (
    "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS tag_id, NULL::VARCHAR AS from_value, "
    "NULL::VARCHAR AS to_value WHERE false"
)


def _group(row: Sequence[Any]) -> TransitionGroup:
    group_id, source, run_id, after_seq, last_seq, n, as_of, note = row
    return TransitionGroup(
        group_id=str(group_id),
        source=str(source),
        run_id=None if run_id is None else str(run_id),
        after_seq=int(after_seq),
        last_seq=int(last_seq),
        n=int(n),
        as_of=pd.Timestamp(as_of, tz="UTC"),
        note=None if note is None else str(note),
    )


class ReadableStore(Protocol):
    """What the log needs of the tag store (``tags.store.TagStore`` provides it)."""

    def exists(self) -> bool: ...

    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


class TransitionLog:
    """Reads of the transitions recorded in a tag store (for consumers with a cursor).

    Args:
        store: The tag store (``tags.store.TagStore``).
    """

    def __init__(self, store: ReadableStore) -> None:
        self.store = store

    def last_seq(self) -> int:
        """The seq of the newest recorded transition (0: none yet, or no store)."""
        if not self.store.exists():
            return 0
        with self.store.reader() as con:
            return _last_seq(con) if _has(con, "transition_groups") else 0

    def groups(self, after_seq: int, *, limit: int = 1000) -> list[TransitionGroup]:
        """Groups holding transitions after ``after_seq``, oldest first (empty ones skipped)."""
        if not self.store.exists():
            return []
        with self.store.reader() as con:
            if not _has(con, "transition_groups"):
                return []
            rows = con.execute(
                "SELECT group_id, source, run_id, after_seq, last_seq, n, as_of, note "
                "FROM transition_groups WHERE last_seq > ? AND n > 0 ORDER BY last_seq LIMIT ?",
                [after_seq, limit],
            ).fetchall()
        return [_group(r) for r in rows]

    def transitions(self, after_seq: int, last_seq: int) -> pd.DataFrame:
        """The transitions with ``after_seq < seq <= last_seq``, in seq order."""
        with self.store.reader() as con:
            if not _has(con, "transitions"):
                return pd.DataFrame(columns=list(TRANSITION_COLUMNS))
            df = con.execute(
                f"SELECT {', '.join(TRANSITION_COLUMNS)} FROM transitions "  # noqa: S608
                "WHERE seq > ? AND seq <= ? ORDER BY seq",
                [after_seq, last_seq],
            ).df()
        if len(df):
            df["as_of"] = pd.to_datetime(df["as_of"]).dt.tz_localize("UTC")
        return df

    def states(
        self,
        group: TransitionGroup,
        *,
        watch: Sequence[str],
        tags: Sequence[str],
    ) -> pd.DataFrame:
        """Before/after values of ``tags`` for customers whose ``watch`` tags changed in ``group``.

        The state right after the group is reconstructed exactly, even when later
        groups exist: a (customer, tag) changed later held the ``from_value`` of its
        first later change; otherwise it holds its current value. The state before the
        group differs from it only where the group itself changed the tag.

        Args:
            group: The group.
            watch: Tags whose changes make a customer a candidate.
            tags: Tags whose values are wanted (should include ``watch``).

        Returns:
            customer_id, tag_id, before, after (NULL: no row), one row per candidate
            customer and tag of ``tags`` that has a value before or after.
        """
        cols = ["customer_id", "tag_id", "before", "after"]
        if group.n == 0 or not watch:
            return pd.DataFrame(columns=cols)
        with self.store.reader() as con:
            latest, base = _current_base(con)
            current = _CURRENT_SQL.format(
                snap_where="AND list_contains($tags, tag_id) "
                "AND customer_id IN (SELECT customer_id FROM cand)",
                tr_where="AND list_contains($tags, tag_id) "
                "AND customer_id IN (SELECT customer_id FROM cand)",
            )
            sql = f"""
            WITH cand AS (
                SELECT DISTINCT customer_id FROM transitions
                WHERE seq > $lo AND seq <= $hi AND list_contains($watch, tag_id)
            ),
            cur AS ({current}),
            later AS (
                SELECT customer_id, tag_id, from_value AS value FROM transitions
                WHERE seq > $hi AND list_contains($tags, tag_id)
                  AND customer_id IN (SELECT customer_id FROM cand)
                QUALIFY row_number() OVER (PARTITION BY customer_id, tag_id ORDER BY seq) = 1
            ),
            aft AS (
                SELECT coalesce(l.customer_id, c.customer_id) AS customer_id,
                       coalesce(l.tag_id, c.tag_id) AS tag_id,
                       CASE WHEN l.customer_id IS NOT NULL THEN l.value ELSE c.value END AS value
                FROM cur c FULL OUTER JOIN later l
                  ON l.customer_id = c.customer_id AND l.tag_id = c.tag_id
            ),
            inside AS (
                SELECT customer_id, tag_id, from_value AS value FROM transitions
                WHERE seq > $lo AND seq <= $hi AND list_contains($tags, tag_id)
                  AND customer_id IN (SELECT customer_id FROM cand)
                QUALIFY row_number() OVER (PARTITION BY customer_id, tag_id ORDER BY seq) = 1
            )
            SELECT coalesce(a.customer_id, i.customer_id) AS customer_id,
                   coalesce(a.tag_id, i.tag_id) AS tag_id,
                   CASE WHEN i.customer_id IS NOT NULL THEN i.value ELSE a.value END AS before,
                   a.value AS after
            FROM aft a FULL OUTER JOIN inside i
              ON i.customer_id = a.customer_id AND i.tag_id = a.tag_id
            WHERE before IS NOT NULL OR after IS NOT NULL
            ORDER BY customer_id, tag_id
            """  # noqa: S608 (fixed SQL; values are parameters)
            params = {
                "lo": group.after_seq,
                "hi": group.last_seq,
                "watch": sorted(watch),
                "tags": sorted(set(tags) | set(watch)),
                "as_of": latest,
                "base": base,
            }
            df = con.execute(sql, params).df()
        return df[cols] if len(df) else pd.DataFrame(columns=cols)
