"""Governance operations on the tag store: erasing customers (all history) and the
erasure count readers watch."""

from __future__ import annotations

from collections.abc import Collection

import duckdb

from tags.store import TagStore
from tags.store_format import has_tables

__all__ = ["erase_customers", "erasures"]


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT value FROM store_meta WHERE key = 'erasures'").fetchone()
    return int(row[0]) if row else 0


def erasures(store: TagStore) -> int:
    """How many erasures the store has applied (0: none, or no store yet)."""
    if not store.exists():
        return 0
    with store.reader() as con:
        return _count(con) if has_tables(con) else 0


def erase_customers(store: TagStore, customer_ids: Collection[str]) -> dict[str, int]:
    """Delete every row of the customers: snapshots (all history), transitions and live
    values, in one transaction, then checkpoint so the deleted rows leave the file.
    Returns rows removed per table."""
    ids = sorted({str(c) for c in customer_ids})
    if not store.exists() or not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    removed: dict[str, int] = {}
    with store.writer() as con:
        con.begin()
        for table in ("snapshots", "transitions", "live_tags"):
            n = con.execute(
                f"SELECT count(*) FROM {table} WHERE customer_id IN ({marks})",  # noqa: S608
                ids,
            ).fetchone()
            con.execute(f"DELETE FROM {table} WHERE customer_id IN ({marks})", ids)  # noqa: S608
            removed[table] = int(n[0]) if n else 0
        # Readers that cache a snapshot (the service) reload when this changes.
        con.execute(
            "INSERT OR REPLACE INTO store_meta VALUES ('erasures', ?)", [str(_count(con) + 1)]
        )
        con.commit()
        # Deleted rows stay in free blocks until a checkpoint rewrites them.
        con.execute("CHECKPOINT")
    return removed
