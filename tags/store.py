"""The tag store: every tagging run's snapshot, with history, in one DuckDB file.

One table holds the tag rows of every snapshot (one snapshot per as-of date), another
the runs that wrote them. A run is one database transaction: the rows of the as-of
date it replaces are deleted and the new rows inserted together, so a run that fails
or is killed leaves the previous snapshot current. A run whose inputs fingerprint
matches the snapshot already stored for its as-of date is a no-op.

Timestamps are stored as naive UTC ``TIMESTAMP`` values and returned as
``datetime64[us, UTC]``, like the fact contract; the tables, the long format and the
checks on incoming rows are in :mod:`tags.store_format`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from features.crypto import EncryptionKeys
from tags.config import StoreConfig
from tags.errors import TagStoreError
from tags.live import reconcile_live
from tags.store_format import (
    DIFF_SQL,
    MATRIX_SQL,
    SNAPSHOT_COLUMNS,
    RunInfo,
    check_long,
    filters,
    format_of,
    has_tables,
    naive,
    now,
    run_info_of,
    select_tags,
    sql_str,
    to_as_of,
    utc_columns,
    validate_incoming,
)
from tags.store_hold import busy, held_of, held_writer, open_store, release
from tags.store_locks import turns_of
from tags.store_reports import coverage_table, diff_summary, wide_select, wide_types
from tags.transitions import record_batch_transitions

__all__ = ["StoreConfig", "TagStore"]

# DuckDB lets one process write at a time and refuses other connections meanwhile; a
# reader (the service, the trigger dispatcher) holds the file for a moment, so opening
# retries for this long before reporting the store busy.
BUSY_TIMEOUT_S = 15.0
# A held writing connection (real-time tagging) is closed after this long idle, or this
# long open: other processes wait at most about that for the file.
HOLD_IDLE_S = 0.25
HOLD_MAX_S = 2.0


class TagStore:
    """Tag snapshots with history in a DuckDB file.

    Every method opens and closes its own connection, so the file is not held open
    between calls (DuckDB allows one writing process at a time); the exception is
    :meth:`held_writer` (real-time tagging), closed within a fraction of a second idle.

    Each run also records what it changed as transitions (``tags.transitions``), in the
    same transaction as its snapshot.

    With encryption keys the database is opened through DuckDB's database encryption
    (``ATTACH ... (ENCRYPTION_KEY ...)``, AES-GCM), a new file is created encrypted, and
    a file written before the project had a key is still read (``tagsmith store
    rotate-key`` rewrites it encrypted).

    Args:
        path: The database file (created on the first write).
        busy_timeout_s: How long opening the file waits while another process holds it.
        keys: Encryption keys (None: a plain database file).
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        keys: EncryptionKeys | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.keys = keys

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if not write and not self.path.exists():
            raise TagStoreError(
                f"Expected a tag store at {self.path}. Got no such file: run "
                "'tagsmith tags run' first."
            )
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # This process's other connections to the file, in the other mode, are waited
        # for exactly (tags.store_locks); open_store's retries are for other processes'.
        with turns_of(self.path).hold(write=write, timeout_s=self.busy_timeout_s):
            held = held_of(self.path)
            if held is not None:  # real-time tagging holds the file open: share it
                yield from held.use()
                return
            con = open_store(self.path, self.keys, write=write, busy_timeout_s=self.busy_timeout_s)
            try:
                yield con
            finally:
                con.close()

    def held_writer(
        self, *, idle_s: float = HOLD_IDLE_S, max_s: float = HOLD_MAX_S
    ) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A writing connection that stays open after the block, for the next writes
        (real-time tagging's micro-batches), until idle for ``idle_s`` or open for
        ``max_s`` (:mod:`tags.store_hold`). Meanwhile every connection this process
        opens to the store is a cursor of it; :meth:`release` closes it now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return held_writer(
            self.path,
            lambda: open_store(
                self.path, self.keys, write=True, busy_timeout_s=self.busy_timeout_s
            ),
            idle_s=idle_s,
            max_s=max_s,
            busy_timeout_s=self.busy_timeout_s,
            cursor_sql="" if self.keys is None else "USE tagstore",
        )

    def keep_open(self) -> contextlib.AbstractContextManager[None]:
        """While inside, a connection :meth:`held_writer` holds is not closed for idling
        (a micro-batch between its writes)."""
        return busy(self.path, idle_s=HOLD_IDLE_S, max_s=HOLD_MAX_S)

    def release(self) -> None:
        """Close this process's held writing connection to the store, if any."""
        release(self.path)

    def exists(self) -> bool:
        """True when the store file exists (a run has written it)."""
        return self.path.exists()

    def reader(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection for analytical readers beyond the methods here (the web
        console loads snapshots as columns through it; ``tags.transitions`` reads the
        transition log through it). Close it soon: an open
        connection keeps a tagging run from writing.
        """
        return self._connect(write=False)

    def writer(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A writing connection (schema created) for writers beyond the methods here
        (real-time tagging's live values, ``tags.live``). Close it soon."""
        return self._connect(write=True)

    # -- writing -----------------------------------------------------------------------

    def find_run(self, as_of: Any, fingerprint: str) -> RunInfo | None:
        """The current run of ``as_of`` when its inputs fingerprint is ``fingerprint``."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as con:
            if not has_tables(con):
                return None
            row = con.execute(
                "SELECT * FROM runs WHERE as_of = ? AND fingerprint = ? AND status = 'succeeded'",
                [naive(to_as_of(as_of)), fingerprint],
            ).df()
        return run_info_of(row.iloc[0]) if len(row) else None

    def write_snapshot(
        self,
        tags: pd.DataFrame,
        *,
        as_of: Any,
        run_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
        n_customers: int | None = None,
        force: bool = False,
    ) -> RunInfo:
        """Store ``tags`` as the snapshot of ``as_of``, atomically.

        The rows of an earlier snapshot of the same as-of date are replaced in the same
        transaction; when its inputs ``fingerprint`` equals ``fingerprint``, nothing is
        written and that run is returned with ``reused=True``.

        Args:
            tags: Long table in the engine's format (:data:`TAG_COLUMNS`; ``as_of`` may
                be omitted). At most one row per customer and tag.
            as_of: The snapshot's as-of date.
            run_id: Id of the run (default: date and a random suffix).
            meta: JSON-serialisable facts about the run (inputs, timings, notices).
            fingerprint: Hash of the run's inputs, for idempotency.
            n_customers: Customers evaluated (default: distinct customers in ``tags``).
            force: Write even when the same fingerprint is stored.

        Raises:
            TagStoreError: ``tags`` breaks the long format, or the store is busy.
        """
        ts = to_as_of(as_of)
        incoming = check_long(tags, ts)
        run_id = run_id or f"{ts:%Y%m%d}-{uuid.uuid4().hex[:10]}"
        meta_json = json.dumps(dict(meta or {}), sort_keys=True, default=str)
        with self._connect(write=True) as con:
            if fingerprint is not None and not force:
                same = con.execute(
                    "SELECT * FROM runs WHERE as_of = ? AND fingerprint = ? "
                    "AND status = 'succeeded'",
                    [naive(ts), fingerprint],
                ).df()
                if len(same):
                    return run_info_of(same.iloc[0], reused=True)
            # One writing process at a time (DuckDB's file lock): a run still marked
            # 'running' belongs to a process that died.
            con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            con.execute(
                "INSERT INTO runs (run_id, as_of, started_at, status, fingerprint, meta) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                [run_id, naive(ts), now(), fingerprint, meta_json],
            )
            # Arrow scans ~3x faster than a pandas frame of strings.
            con.register("incoming", pa.Table.from_pandas(incoming, preserve_index=False))
            try:
                counts = validate_incoming(con, count_customers=n_customers is None)
                n_cust = counts["n_customers"] if n_customers is None else int(n_customers)
                con.begin()
                # What this run changes, against the state it replaces (same transaction).
                record_batch_transitions(con, "incoming", as_of=naive(ts), run_id=run_id)
                # Batch wins over live values; how many it overrode is kept with the run.
                overridden = reconcile_live(con, "incoming", as_of=naive(ts))
                if overridden:
                    meta_json = json.dumps(
                        {**json.loads(meta_json), "live_overridden": overridden}, sort_keys=True
                    )
                    con.execute("UPDATE runs SET meta = ? WHERE run_id = ?", [meta_json, run_id])
                con.execute("DELETE FROM snapshots WHERE as_of = ?", [naive(ts)])
                # Stored in customer order: each row group then spans a narrow range of
                # ids, so a one-customer read (profiles, history) skips the others by
                # their min/max. (DuckDB keeps a string's min/max to its first 8 bytes:
                # ids sharing a longer prefix gain less.)
                con.execute(
                    "INSERT INTO snapshots SELECT customer_id, tag_id, value, score, source, "
                    "version, ?, ? FROM incoming ORDER BY customer_id, tag_id",
                    [naive(ts), run_id],
                )
                con.execute(
                    "UPDATE runs SET status = 'replaced' WHERE as_of = ? AND status = 'succeeded'",
                    [naive(ts)],
                )
                con.execute(
                    "UPDATE runs SET status = 'succeeded', finished_at = ?, n_rows = ?, "
                    "n_customers = ?, n_tags = ? WHERE run_id = ?",
                    [now(), counts["n_rows"], n_cust, counts["n_tags"], run_id],
                )
                self._before_commit(con)
                con.commit()
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                con.execute(
                    "UPDATE runs SET status = 'failed', finished_at = ?, error = ? "
                    "WHERE run_id = ?",
                    [now(), f"{type(exc).__name__}: {exc}"[:2000], run_id],
                )
                raise
            finally:
                con.unregister("incoming")
            row = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
        return run_info_of(row.iloc[0])

    def _before_commit(self, con: duckdb.DuckDBPyConnection) -> None:
        """Last point before a run's transaction commits (tests inject failures here)."""

    # -- reading -----------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        """Every run, newest first: id, as-of, times, status, counts, fingerprint."""
        with self._connect(write=False) as con:
            if not has_tables(con):
                return pd.DataFrame(columns=["run_id", "as_of", "status"])
            df = con.execute("SELECT * FROM runs ORDER BY started_at DESC").df()
        return utc_columns(df, ["as_of", "started_at", "finished_at"])

    def snapshot_dates(self) -> list[pd.Timestamp]:
        """As-of dates with a current snapshot, oldest first."""
        if not self.path.exists():
            return []
        with self._connect(write=False) as con:
            if not has_tables(con):
                return []
            rows = con.execute(
                "SELECT DISTINCT as_of FROM runs WHERE status = 'succeeded' ORDER BY as_of"
            ).fetchall()
        return [to_as_of(r[0]) for r in rows]

    def latest_as_of(self) -> pd.Timestamp | None:
        """The newest snapshot's as-of date, or None when the store is empty."""
        dates = self.snapshot_dates()
        return dates[-1] if dates else None

    def resolve_as_of(self, as_of: Any = None) -> pd.Timestamp:
        """The snapshot that was current at ``as_of``: the newest one on or before it.

        Raises:
            TagStoreError: No snapshot is that old (the message lists those stored).
        """
        dates = self.snapshot_dates()
        if not dates:
            raise TagStoreError(
                f"Expected at least one tag snapshot in {self.path}. Got none: run "
                "'tagsmith tags run' first."
            )
        if as_of is None:
            return dates[-1]
        ts = to_as_of(as_of)
        earlier = [d for d in dates if d <= ts]
        if not earlier:
            listed = ", ".join(f"{d:%Y-%m-%d}" for d in dates[:10])
            raise TagStoreError(
                f"Expected a tag snapshot on or before {ts:%Y-%m-%d}. Got the first one on "
                f"{dates[0]:%Y-%m-%d} (stored: {listed})."
            )
        return earlier[-1]

    def run_info(self, as_of: Any = None) -> RunInfo:
        """The run that wrote the snapshot current at ``as_of``."""
        ts = self.resolve_as_of(as_of)
        with self._connect(write=False) as con:
            row = con.execute(
                "SELECT * FROM runs WHERE as_of = ? AND status = 'succeeded'", [naive(ts)]
            ).df()
        return run_info_of(row.iloc[0])

    def tag_ids(self, as_of: Any = None) -> list[str]:
        """Tags present in the snapshot current at ``as_of``."""
        ts = self.resolve_as_of(as_of)
        with self._connect(write=False) as con:
            rows = con.execute(
                "SELECT DISTINCT tag_id FROM snapshots WHERE as_of = ? ORDER BY tag_id",
                [naive(ts)],
            ).fetchall()
        return [r[0] for r in rows]

    def snapshot(
        self,
        as_of: Any = None,
        *,
        tags: Collection[str] | None = None,
        customers: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """The long table current at ``as_of`` (default: the newest snapshot).

        Args:
            as_of: Date; the newest snapshot on or before it is returned.
            tags: Only these tag ids (None: all).
            customers: Only these customers (None: all).
        """
        ts = self.resolve_as_of(as_of)
        where, params = filters(tags=tags, customers=customers)
        with self._connect(write=False) as con:
            df = con.execute(
                f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM snapshots "  # noqa: S608 (fixed names)
                f"WHERE as_of = ? {where} ORDER BY customer_id, tag_id",
                [naive(ts), *params],
            ).df()
        return utc_columns(df, ["as_of"])

    def export(
        self,
        out: Path,
        as_of: Any = None,
        *,
        tags: Collection[str] | None = None,
    ) -> tuple[int, int]:
        """Write the snapshot current at ``as_of`` to ``out`` (CSV or Parquet by suffix).

        The file is written to a temporary sibling and then renamed, so readers never
        see half a file.

        Returns:
            (rows written, distinct customers).

        Raises:
            TagStoreError: ``out`` ends neither in ``.csv`` nor ``.parquet``.
        """
        fmt = format_of(out)
        ts = self.resolve_as_of(as_of)
        where, params = filters(tags=tags)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        query = (
            "SELECT customer_id, tag_id, value, score, source, version, "  # noqa: S608
            "strftime(as_of, '%Y-%m-%dT%H:%M:%SZ') AS as_of, run_id FROM snapshots "
            f"WHERE as_of = ? {where} ORDER BY customer_id, tag_id"
        )
        options = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
        try:
            with self._connect(write=False) as con:
                con.execute(f"COPY ({query}) TO '{sql_str(tmp)}' {options}", [naive(ts), *params])
                n_rows, n_cust = con.execute(
                    f"SELECT count(*), count(DISTINCT customer_id) FROM snapshots "  # noqa: S608
                    f"WHERE as_of = ? {where}",
                    [naive(ts), *params],
                ).fetchone() or (0, 0)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return int(n_rows), int(n_cust)

    def history(self, customer_id: str, *, tags: Collection[str] | None = None) -> pd.DataFrame:
        """Every stored row of one customer, by tag then as-of date."""
        where, params = filters(tags=tags, customers=[customer_id])
        with self._connect(write=False) as con:
            df = con.execute(
                f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM snapshots "  # noqa: S608
                f"WHERE TRUE {where} ORDER BY tag_id, as_of",
                params,
            ).df()
        return utc_columns(df, ["as_of"])

    def diff(
        self,
        from_as_of: Any,
        to_as_of: Any,
        tag_id: str | None = None,
        *,
        tags: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """Who entered, left or changed each tag between two snapshots.

        Returns:
            customer_id, tag_id, from_value (NA: tag absent), to_value (NA: absent),
            change: ``entered`` (tag absent before), ``left`` (absent after) or
            ``changed`` (left ``from_value``, entered ``to_value``). Unchanged rows
            are omitted.
        """
        a, b = self.resolve_as_of(from_as_of), self.resolve_as_of(to_as_of)
        selected = select_tags(tag_id, tags)
        where, params = filters(tags=selected)
        with self._connect(write=False) as con:
            df = con.execute(
                DIFF_SQL.format(where=where), [naive(a), *params, naive(b), *params]
            ).df()
        return df

    def diff_summary(self, changes: pd.DataFrame) -> pd.DataFrame:
        """Per tag and value: customers who entered it, who left it, and the net change."""
        return diff_summary(changes)

    def transitions(
        self,
        tag_id: str,
        *,
        customer_id: str | None = None,
        since: Any = None,
    ) -> pd.DataFrame:
        """Every change of one tag between consecutive snapshots, with its date.

        Returns:
            customer_id, tag_id, at (as-of date of the snapshot where the change was
            first seen), from_value, to_value, change.
        """
        dates = self.snapshot_dates()
        if since is not None:
            start = to_as_of(since)
            dates = [d for d in dates if d >= start]
        frames = []
        for a, b in itertools.pairwise(dates):
            d = self.diff(a, b, tag_id)
            if customer_id is not None:
                d = d[d["customer_id"] == customer_id]
            d.insert(2, "at", b)
            frames.append(d)
        cols = ["customer_id", "tag_id", "at", "from_value", "to_value", "change"]
        if not frames:
            return pd.DataFrame(columns=cols)
        return pd.concat(frames, ignore_index=True)[cols]

    def transition_matrix(self, tag_id: str, from_as_of: Any, to_as_of: Any) -> pd.DataFrame:
        """Customers per (from_value, to_value) of one tag between two snapshots.

        Unchanged customers count on the diagonal; ``(absent)`` marks no row.
        """
        a, b = self.resolve_as_of(from_as_of), self.resolve_as_of(to_as_of)
        with self._connect(write=False) as con:
            df = con.execute(MATRIX_SQL, [naive(a), tag_id, naive(b), tag_id]).df()
        return df

    def coverage(
        self,
        as_of: Any = None,
        *,
        threshold: float = 0.05,
        tags: Collection[str] | None = None,
        expected_tags: Collection[str] = (),
    ) -> pd.DataFrame:
        """Per tag value: count, share of customers, and change against the previous run.

        Args:
            as_of: The snapshot to report (default: newest).
            threshold: A value whose share moves by more than this (absolute, e.g. 0.05
                = 5 points) against the previous snapshot is flagged ``share_shift``.
            tags: Only these tags (None: all).
            expected_tags: Tags that should have rows (e.g. the catalogue's active
                tags); one with none is flagged ``coverage_zero`` even when it never had.

        Returns:
            tag_id, value, count, share, prev_count, prev_share, share_change, flag
            (``coverage_zero``, ``share_shift`` or empty).
        """
        cur = self.resolve_as_of(as_of)
        dates = self.snapshot_dates()
        prev = max((d for d in dates if d < cur), default=None)
        cur_n = self.run_info(cur).n_customers
        prev_n = self.run_info(prev).n_customers if prev is not None else 0
        where, params = filters(tags=tags)
        with self._connect(write=False) as con:
            counts = con.execute(
                f"SELECT tag_id, value, count(*) AS n FROM snapshots "  # noqa: S608
                f"WHERE as_of = ? {where} GROUP BY ALL",
                [naive(cur), *params],
            ).df()
            before = None
            if prev is not None:
                before = con.execute(
                    f"SELECT tag_id, value, count(*) AS n FROM snapshots "  # noqa: S608
                    f"WHERE as_of = ? {where} GROUP BY ALL",
                    [naive(prev), *params],
                ).df()
        return coverage_table(
            counts,
            before,
            n_customers=cur_n,
            prev_n_customers=prev_n,
            threshold=threshold,
            tags=tags,
            expected_tags=expected_tags,
            attrs={"as_of": cur, "previous_as_of": prev, "n_customers": cur_n},
        )

    def sizes_over_time(self, *, tags: Collection[str] | None = None) -> pd.DataFrame:
        """as_of, tag_id, value, count and share for every stored snapshot."""
        where, params = filters(tags=tags)
        with self._connect(write=False) as con:
            df = con.execute(
                "SELECT s.as_of, s.tag_id, s.value, count(*) AS count, "  # noqa: S608
                "count(*) / any_value(r.n_customers) AS share FROM snapshots s "
                "JOIN runs r ON r.run_id = s.run_id "
                f"WHERE TRUE {where.replace('tag_id', 's.tag_id')} "
                "GROUP BY ALL ORDER BY s.as_of, s.tag_id, s.value",
                params,
            ).df()
        return utc_columns(df, ["as_of"])

    def wide(
        self,
        as_of: Any = None,
        *,
        tags: Collection[str],
        boolean_tags: Collection[str] = (),
        score_tags: Collection[str] = (),
    ) -> pd.DataFrame:
        """One row per customer of the snapshot, one column per tag (for audiences).

        Args:
            as_of: The snapshot (default: newest).
            tags: The tag columns; a customer without a row for a tag gets NA.
            boolean_tags: Of ``tags``, those that are boolean: a bool column, False
                where the customer has no row.
            score_tags: Tags whose score is added as a ``{tag}_score`` float column.
        """
        ts = self.resolve_as_of(as_of)
        select, params = wide_select(tags, boolean_tags, score_tags)
        with self._connect(write=False) as con:
            df = con.execute(
                f"SELECT {select} FROM snapshots WHERE as_of = ? "  # noqa: S608
                "GROUP BY customer_id ORDER BY customer_id",
                [*params, naive(ts)],
            ).df()
        return wide_types(df, tags, boolean_tags)
