"""The durable outbox: items to deliver, batches, attempts, cursors, sync memberships.

One SQLite file in the project's data folder (WAL journal), so what is committed
survives a crash of the process (``kill -9``). ``synchronous=NORMAL``: a power loss may
forget the last few commits, never half of one, and every forgotten step is redone with
the same idempotency keys (the cursor goes back with the items it queued; a forgotten
"delivered" sends the batch again), so delivery stays at least once; an ``fsync`` per
commit would cost more than the HTTP request. Every state change is one transaction:

* **enqueue**: the items a transition group fires and the cursor past that group,
  together, so a crash either keeps both or neither (and re-reading the group gives
  the same idempotency keys, ignored when already queued);
* **claim**: due batches (or new batches formed from pending items) become
  ``sending`` with their attempt counted *before* the request leaves, so a crash
  mid-request means "maybe delivered": the batch is sent again, same body, same keys;
* **record**: the outcome of one attempt (delivered, retry at a time, or dead).

Items: ``pending`` -> ``batched`` -> ``delivered`` | ``dead``. Batches: ``due`` ->
``sending`` -> ``delivered`` | ``due`` (retry) | ``dead``; ``replay`` moves a dead
batch back to ``due``. Customer ids live only in item payloads (they must be sent);
everything shown or audited uses a keyed hash (:meth:`Outbox.hash_customer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from activation.errors import OutboxError
from activation.outbox_records import FINAL, SCHEMA, Attempt, Claimed, Item
from activation.payloads import batch_body, batch_key

__all__ = ["Attempt", "Claimed", "Item", "Outbox"]

_CURSOR = "transitions_seq"


class Outbox:
    """The outbox database (created on first use).

    One connection per instance, used by one thread at a time (the dispatcher's loop
    or one CLI command); other processes use their own instance.

    Args:
        path: The SQLite file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._pepper: bytes | None = None

    # ------------------------------------------------------------------ connection
    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                con = sqlite3.connect(
                    str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
                )
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                # Large queues insert into three indexes; a bigger page cache (64 MiB at
                # most) keeps them in memory.
                con.execute("PRAGMA cache_size=-65536")
                con.executescript(SCHEMA)
                # The key of customer-id hashes: random per outbox, created once.
                con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('pepper', ?)", (secrets.token_hex(32),)
                )
                self._pepper = bytes.fromhex(
                    con.execute("SELECT value FROM meta WHERE key = 'pepper'").fetchone()[0]
                )
            except sqlite3.Error as exc:
                raise OutboxError(f"Cannot open the outbox {self.path}: {exc}") from exc
            self._con = con
        return self._con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            con = self._connection()
            con.row_factory = sqlite3.Row
            try:
                return list(con.execute(sql, params).fetchall())
            finally:
                con.row_factory = None

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ------------------------------------------------------------------ hashing, cursor
    def hash_customer(self, customer_id: str) -> str:
        """A keyed hash of a customer id (the key is random per outbox and never shown)."""
        self._connection()
        return self._hash(customer_id)

    def _hash(self, customer_id: str) -> str:
        assert self._pepper is not None
        digest = hashlib.blake2b(customer_id.encode("utf-8"), key=self._pepper, digest_size=10)
        return digest.hexdigest()

    def cursor(self) -> int:
        """The last transition seq whose group has been processed (0: none)."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (_CURSOR,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, seq: int) -> None:
        """Move the cursor (e.g. when the tag store was restored to an older state)."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_CURSOR, str(int(seq))))

    # ------------------------------------------------------------------ enqueue
    def enqueue(self, items: Sequence[Item], *, cursor: int | None = None) -> int:
        """Queue ``items`` (and move the cursor) in one transaction; returns how many were new.

        Items whose key is queued already are ignored, so enqueueing is idempotent.
        """
        with self._tx() as con:
            before = con.total_changes
            self._insert(con, items)
            added = con.total_changes - before
            if cursor is not None:
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_CURSOR, str(cursor)))
        return added

    def _insert(self, con: sqlite3.Connection, items: Sequence[Item]) -> None:
        now = time.time()
        con.executemany(
            "INSERT OR IGNORE INTO items (key, kind, source, source_version, destination, "
            "customer_hash, payload, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
            "'pending')",
            [
                (
                    it.key,
                    it.kind,
                    it.source,
                    it.source_version,
                    it.destination,
                    self._hash(it.customer_id),
                    it.payload,
                    now,
                )
                for it in items
            ],
        )

    # ------------------------------------------------------------------ claim, record
    def recover(self) -> int:
        """Batches left ``sending`` by a dead process become due again; returns how many.

        Call only while holding the dispatcher lock (no other sender is running).
        """
        with self._tx() as con:
            cur = con.execute(
                "UPDATE batches SET state = 'due', last_error = coalesce(last_error, "
                "'interrupted: the sender stopped mid-attempt') WHERE state = 'sending'"
            )
            return int(cur.rowcount)

    def claim(
        self, destination: str, *, batch_size: int, max_items: int | None = None
    ) -> Claimed | None:
        """Claim one batch for ``destination`` (see :meth:`claim_many`); None if nothing is due."""
        claimed = self.claim_many(destination, batch_size=batch_size, limit=1, max_items=max_items)
        return claimed[0] if claimed else None

    def claim_many(
        self,
        destination: str,
        *,
        batch_size: int,
        limit: int,
        max_items: int | None = None,
    ) -> list[Claimed]:
        """Claim up to ``limit`` batches for ``destination`` in one transaction.

        Due retries come first (oldest due first), then new batches formed from pending
        items in queue order. Each claimed batch becomes ``sending`` with its attempt
        counted.

        Args:
            destination: The destination.
            batch_size: Items per new batch.
            limit: Batches to claim at most.
            max_items: Rate-limit allowance over all claimed batches: a retry larger
                than what is left waits, and new batches are cut to it (None: no limit).
        """
        now = time.time()
        ids: list[int] = []
        left = max_items
        with self._tx() as con:
            due = con.execute(
                "SELECT id, n_items FROM batches WHERE destination = ? AND state = 'due' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                (destination, now, limit),
            ).fetchall()
            for batch_id, n_items in due:
                if left is not None and n_items > left:
                    break
                ids.append(int(batch_id))
                left = None if left is None else left - int(n_items)
            while len(ids) < limit and (left is None or left > 0):
                size = batch_size if left is None else max(1, min(batch_size, left))
                formed = self._form(con, destination, size, now)
                if formed is None:
                    break
                batch_id, n_items = formed
                ids.append(batch_id)
                left = None if left is None else left - n_items
            con.executemany(
                "UPDATE batches SET state = 'sending', attempts = attempts + 1, "
                "last_attempt_at = ? WHERE id = ?",
                [(now, i) for i in ids],
            )
            rows = [
                con.execute(
                    "SELECT id, key, destination, body, n_items, attempts, sources FROM batches "
                    "WHERE id = ?",
                    (i,),
                ).fetchone()
                for i in ids
            ]
        return [
            Claimed(
                id=int(b[0]),
                key=str(b[1]),
                destination=str(b[2]),
                body=bytes(b[3]),
                n_items=int(b[4]),
                attempt=int(b[5]),
                sources=tuple(json.loads(b[6])),
            )
            for b in rows
        ]

    @staticmethod
    def _form(
        con: sqlite3.Connection, destination: str, size: int, now: float
    ) -> tuple[int, int] | None:
        rows = con.execute(
            "SELECT id, key, payload, source FROM items WHERE destination = ? "
            "AND state = 'pending' ORDER BY id LIMIT ?",
            (destination, size),
        ).fetchall()
        if not rows:
            return None
        key = batch_key(destination, [r[1] for r in rows])
        body = batch_body(destination, key, [bytes(r[2]) for r in rows])
        sources = json.dumps(sorted({str(r[3]) for r in rows}))
        cur = con.execute(
            "INSERT INTO batches (key, destination, body, n_items, sources, state, "
            "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'due', ?, ?)",
            (key, destination, body, len(rows), sources, now, now),
        )
        batch_id = int(cur.lastrowid or 0)
        # The rows are the first pending ids of the destination, so one range covers them.
        con.execute(
            "UPDATE items SET state = 'batched', batch_id = ? WHERE destination = ? "
            "AND state = 'pending' AND id BETWEEN ? AND ?",
            (batch_id, destination, rows[0][0], rows[-1][0]),
        )
        return batch_id, len(rows)

    def record(
        self,
        claimed: Claimed,
        outcome: str,
        *,
        status: int | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record one attempt's outcome: ``delivered``, ``retry`` or ``dead``."""
        self.record_many([Attempt(claimed, outcome, status, error, duration_ms, next_attempt_at)])

    def record_many(self, attempts: Sequence[Attempt]) -> None:
        """Record several attempts' outcomes in one transaction."""
        for a in attempts:
            if a.outcome not in ("delivered", "retry", "dead"):
                raise OutboxError(f"Expected outcome delivered, retry or dead. Got {a.outcome!r}.")
        now = time.time()
        with self._tx() as con:
            for a in attempts:
                state = "due" if a.outcome == "retry" else a.outcome
                con.execute(
                    "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        a.claimed.id,
                        a.claimed.attempt,
                        now,
                        a.outcome,
                        a.status,
                        a.error,
                        a.duration_ms,
                    ),
                )
                con.execute(
                    "UPDATE batches SET state = ?, last_status = ?, last_error = ?, "
                    "next_attempt_at = ?, finished_at = ? WHERE id = ?",
                    (
                        state,
                        a.status,
                        a.error,
                        a.next_attempt_at if a.next_attempt_at is not None else now,
                        now if state in FINAL else None,
                        a.claimed.id,
                    ),
                )
                if state in FINAL:
                    con.execute(
                        "UPDATE items SET state = ? WHERE batch_id = ?", (state, a.claimed.id)
                    )

    # ------------------------------------------------------------------ replay
    def replay(
        self,
        *,
        batch_ids: Sequence[int] = (),
        source: str | None = None,
        destination: str | None = None,
    ) -> list[int]:
        """Dead batches back to due (attempts reset); returns the ids moved.

        With ``batch_ids``, exactly those (each must be dead); otherwise every dead
        batch, optionally of one trigger/sync ``source`` or one ``destination``.

        Raises:
            OutboxError: A named batch does not exist or is not dead.
        """
        now = time.time()
        with self._tx() as con:
            if batch_ids:
                ids = []
                for bid in batch_ids:
                    row = con.execute("SELECT state FROM batches WHERE id = ?", (bid,)).fetchone()
                    if row is None:
                        raise OutboxError(
                            f"Expected a delivery batch id. Got {bid}: no such batch."
                        )
                    if row[0] != "dead":
                        raise OutboxError(
                            f"Expected a dead batch to replay. Got batch {bid} in state {row[0]}."
                        )
                    ids.append(int(bid))
            else:
                rows = con.execute(
                    "SELECT id, sources FROM batches WHERE state = 'dead' "
                    "AND (? IS NULL OR destination = ?) ORDER BY id",
                    (destination, destination),
                ).fetchall()
                ids = [int(r[0]) for r in rows if source is None or source in json.loads(r[1])]
            for bid in ids:
                con.execute(
                    "UPDATE batches SET state = 'due', attempts = 0, next_attempt_at = ?, "
                    "finished_at = NULL WHERE id = ?",
                    (now, bid),
                )
                con.execute("UPDATE items SET state = 'batched' WHERE batch_id = ?", (bid,))
        return ids

    # ------------------------------------------------------------------ inspection
    def next_due(self, destinations: Sequence[str]) -> float | None:
        """Earliest time a batch of these destinations is due (now if items are pending)."""
        if not destinations:
            return None
        marks = ",".join("?" * len(destinations))
        pending = self._read(
            f"SELECT 1 FROM items WHERE state = 'pending' AND destination IN ({marks}) LIMIT 1",  # noqa: S608
            tuple(destinations),
        )
        if pending:
            return time.time()
        rows = self._read(
            f"SELECT min(next_attempt_at) FROM batches WHERE state = 'due' "  # noqa: S608
            f"AND destination IN ({marks})",
            tuple(destinations),
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def pending(self, destination: str) -> int:
        """Items of ``destination`` not yet in a batch."""
        rows = self._read(
            "SELECT count(*) FROM items WHERE destination = ? AND state = 'pending'",
            (destination,),
        )
        return int(rows[0][0])

    def open_count(self) -> int:
        """Items not yet delivered or dead."""
        rows = self._read("SELECT count(*) FROM items WHERE state IN ('pending', 'batched')")
        return int(rows[0][0])

    def counts(self) -> list[dict[str, Any]]:
        """Items per source, destination and state."""
        rows = self._read(
            "SELECT source, destination, state, count(*) AS n FROM items GROUP BY 1, 2, 3 "
            "ORDER BY 1, 2, 3"
        )
        return [dict(r) for r in rows]

    def batches(
        self,
        *,
        state: str | None = None,
        source: str | None = None,
        destination: str | None = None,
        last: int = 50,
    ) -> list[dict[str, Any]]:
        """The newest batches (no bodies), optionally filtered."""
        rows = self._read(
            "SELECT id, key, destination, n_items, sources, state, attempts, next_attempt_at, "
            "created_at, last_attempt_at, last_status, last_error, finished_at FROM batches "
            "WHERE (? IS NULL OR state = ?) AND (? IS NULL OR destination = ?) "
            "ORDER BY id DESC",
            (state, state, destination, destination),
        )
        out = []
        for r in rows:
            record = dict(r)
            record["sources"] = json.loads(record["sources"])
            if source is not None and source not in record["sources"]:
                continue
            out.append(record)
            if len(out) >= last:
                break
        return out

    def batch(self, batch_id: int) -> dict[str, Any]:
        """One batch with its body and attempts.

        Raises:
            OutboxError: No such batch.
        """
        rows = self._read("SELECT * FROM batches WHERE id = ?", (batch_id,))
        if not rows:
            raise OutboxError(f"Expected a delivery batch id. Got {batch_id}: no such batch.")
        record = dict(rows[0])
        record["sources"] = json.loads(record["sources"])
        record["attempt_log"] = [
            dict(r)
            for r in self._read(
                "SELECT attempt, at, outcome, status, error, duration_ms FROM attempts "
                "WHERE batch_id = ? ORDER BY attempt",
                (batch_id,),
            )
        ]
        return record

    def customer_hashes(self, batch_id: int) -> list[str]:
        """Keyed hashes of the customers in a batch (for the audit log)."""
        rows = self._read(
            "SELECT customer_hash FROM items WHERE batch_id = ? ORDER BY id", (batch_id,)
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ audience syncs
    def sync_state(self, sync: str) -> tuple[int, float | None, str | None, set[str]]:
        """(last run number, its time, its snapshot, the members the destination holds)."""
        rows = self._read(
            "SELECT run, at, snapshot FROM sync_runs WHERE sync = ? ORDER BY run DESC LIMIT 1",
            (sync,),
        )
        members = {
            str(r[0])
            for r in self._read("SELECT customer_id FROM sync_members WHERE sync = ?", (sync,))
        }
        if not rows:
            return 0, None, None, members
        return int(rows[0][0]), float(rows[0][1]), str(rows[0][2]), members

    def commit_sync(
        self,
        sync: str,
        *,
        run: int,
        as_of: str,
        kind: str,
        added: Sequence[str],
        removed: Sequence[str],
        members: int,
        snapshot: str,
        target: str | None,
        items: Sequence[Item] = (),
    ) -> None:
        """Record a sync run: its membership change, its queued items, in one transaction."""
        now = time.time()
        with self._tx() as con:
            self._insert(con, items)
            con.executemany(
                "INSERT OR IGNORE INTO sync_members VALUES (?, ?)", [(sync, c) for c in added]
            )
            con.executemany(
                "DELETE FROM sync_members WHERE sync = ? AND customer_id = ?",
                [(sync, c) for c in removed],
            )
            con.execute(
                "INSERT INTO sync_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sync, run, now, as_of, kind, len(added), len(removed), members, snapshot, target),
            )

    def sync_runs(self, sync: str | None = None, *, last: int = 20) -> list[dict[str, Any]]:
        """The newest sync runs."""
        rows = self._read(
            "SELECT * FROM sync_runs WHERE (? IS NULL OR sync = ?) ORDER BY at DESC LIMIT ?",
            (sync, sync, last),
        )
        return [dict(r) for r in rows]
