"""Erasing customers from the outbox: queued items, batch bodies, sync member lists.

Kept beside :mod:`activation.outbox` (which owns the tables); the project's erasure
(``tagsmith customers erase``) calls it with the other stores.
"""

from __future__ import annotations

from collections.abc import Sequence

from activation.outbox import Outbox
from activation.payloads import batch_body

__all__ = ["erase_from_outbox"]


def erase_from_outbox(outbox: Outbox, customer_ids: Sequence[str]) -> dict[str, int]:
    """Remove the customers from every item, batch body and sync member list.

    A batch holding one of their items is re-formed from its other items (same key,
    same state) or, when none is left, deleted with its attempts. Returns counts.
    """
    hashes = [outbox.hash_customer(str(c)) for c in customer_ids]
    if not hashes:
        return {"items": 0, "batches": 0, "sync_members": 0}
    marks = ", ".join("?" for _ in hashes)
    with outbox._tx() as con:
        batch_ids = [
            int(r[0])
            for r in con.execute(
                f"SELECT DISTINCT batch_id FROM items WHERE customer_hash IN ({marks}) "  # noqa: S608
                "AND batch_id IS NOT NULL",
                hashes,
            ).fetchall()
        ]
        cur = con.execute(f"DELETE FROM items WHERE customer_hash IN ({marks})", hashes)  # noqa: S608
        n_items = int(cur.rowcount)
        for batch_id in batch_ids:
            key, destination = con.execute(
                "SELECT key, destination FROM batches WHERE id = ?", (batch_id,)
            ).fetchone()
            payloads = [
                bytes(r[0])
                for r in con.execute(
                    "SELECT payload FROM items WHERE batch_id = ? ORDER BY id", (batch_id,)
                ).fetchall()
            ]
            if payloads:
                con.execute(
                    "UPDATE batches SET body = ?, n_items = ? WHERE id = ?",
                    (batch_body(destination, key, payloads), len(payloads), batch_id),
                )
            else:
                con.execute("DELETE FROM attempts WHERE batch_id = ?", (batch_id,))
                con.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        members = con.execute(
            f"DELETE FROM sync_members WHERE customer_id IN ({marks})",  # noqa: S608
            [str(c) for c in customer_ids],
        )
        n_members = int(members.rowcount)
    with outbox._lock:
        # Freed pages would still hold the payloads: rewrite the file.
        outbox._connection().execute("VACUUM")
    return {"items": n_items, "batches": len(batch_ids), "sync_members": n_members}
