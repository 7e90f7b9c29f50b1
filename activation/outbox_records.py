"""The outbox's tables and the records that go in and out of it.

Kept apart from :class:`activation.outbox.Outbox` (the transactions) so the shapes
read on one page; ``activation.outbox`` re-exports the records.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FINAL", "SCHEMA", "Attempt", "Claimed", "Item"]

# Batch and item states after which nothing more happens.
FINAL = ("delivered", "dead")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    source_version INTEGER NOT NULL,
    destination TEXT NOT NULL,
    customer_hash TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    batch_id INTEGER
);
CREATE INDEX IF NOT EXISTS items_pending ON items (destination, state, id);
CREATE INDEX IF NOT EXISTS items_batch ON items (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    destination TEXT NOT NULL,
    body BLOB NOT NULL,
    n_items INTEGER NOT NULL,
    sources TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_attempt_at REAL,
    last_status INTEGER,
    last_error TEXT,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS batches_due ON batches (state, destination, next_attempt_at);
CREATE TABLE IF NOT EXISTS attempts (
    batch_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms REAL,
    PRIMARY KEY (batch_id, attempt)
);
CREATE TABLE IF NOT EXISTS sync_members (
    sync TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (sync, customer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_runs (
    sync TEXT NOT NULL,
    run INTEGER NOT NULL,
    at REAL NOT NULL,
    as_of TEXT NOT NULL,
    kind TEXT NOT NULL,
    added INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    members INTEGER NOT NULL,
    snapshot TEXT NOT NULL,
    target TEXT,
    PRIMARY KEY (sync, run)
);
"""


@dataclass(frozen=True)
class Item:
    """One thing to deliver.

    Attributes:
        key: Idempotency key (unique; enqueueing it again does nothing).
        kind: ``trigger`` or ``sync``.
        source: The trigger or sync name.
        source_version: The applied definitions version it came from.
        destination: Destination name.
        customer_id: The customer (hashed before storing outside the payload).
        payload: Canonical JSON sent in the batch's ``events`` list.
    """

    key: str
    kind: str
    source: str
    source_version: int
    destination: str
    customer_id: str
    payload: bytes


@dataclass(frozen=True)
class Claimed:
    """A batch claimed for one attempt.

    Attributes:
        id: Batch id.
        key: Batch idempotency key (``Idempotency-Key`` header).
        destination: Where it goes.
        body: The exact bytes to send.
        n_items: Events in it.
        attempt: This attempt's number (1 = first).
        sources: Trigger / sync names in it.
    """

    id: int
    key: str
    destination: str
    body: bytes
    n_items: int
    attempt: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome, to record.

    Attributes:
        claimed: The batch.
        outcome: ``delivered``, ``retry`` or ``dead``.
        status: HTTP status (None: no response).
        error: What went wrong.
        duration_ms: How long it took.
        next_attempt_at: When to retry (``retry``; Unix time).
    """

    claimed: Claimed
    outcome: str
    status: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    next_attempt_at: float | None = None
