"""One customer's rows of the tag store, read through one connection.

Opening the store costs more than the queries a profile needs (the snapshot dates, the
run, the customer's rows over time), so :func:`customer_rows` runs them all on one
read-only connection (``TagStore.reader``) and closes it at once: an open connection
keeps a tagging run from writing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pandas as pd

from explain.errors import ExplainError
from tags.store import TagStore
from tags.store_format import (
    SNAPSHOT_COLUMNS,
    RunInfo,
    filters,
    has_tables,
    naive,
    run_info_of,
    to_as_of,
    utc_columns,
)

__all__ = ["CustomerRows", "customer_rows"]


@dataclass(frozen=True)
class CustomerRows:
    """What the store holds of one customer.

    Attributes:
        as_of: The snapshot explained (the newest on or before the asked date).
        dates: Every snapshot date, oldest first.
        run: The run that wrote that snapshot.
        current: The customer's rows in that snapshot.
        history: The customer's rows in every snapshot, by tag then date.
    """

    as_of: pd.Timestamp
    dates: list[pd.Timestamp]
    run: RunInfo
    current: pd.DataFrame
    history: pd.DataFrame


def customer_rows(
    store: TagStore, customer_id: str, *, tags: Collection[str], as_of: Any = None
) -> CustomerRows:
    """The customer's rows of the visible ``tags`` around the snapshot current at ``as_of``.

    Raises:
        ExplainError: There is no snapshot (that old).
    """
    none = ExplainError(
        "Expected a tag snapshot to explain. Got none: run 'tagsmith tags run' first."
    )
    if not store.exists():
        raise none
    with store.reader() as con:
        if not has_tables(con):
            raise none
        found = con.execute(
            "SELECT DISTINCT as_of FROM runs WHERE status = 'succeeded' ORDER BY as_of"
        ).fetchall()
        dates = [to_as_of(r[0]) for r in found]
        if not dates:
            raise none
        wanted = dates[-1] if as_of is None else to_as_of(as_of)
        earlier = [d for d in dates if d <= wanted]
        if not earlier:
            raise ExplainError(
                f"Expected a tag snapshot on or before {wanted:%Y-%m-%d}. Got the first one "
                f"on {dates[0]:%Y-%m-%d}."
            )
        ts = earlier[-1]
        run = con.execute(
            "SELECT * FROM runs WHERE as_of = ? AND status = 'succeeded'", [naive(ts)]
        ).df()
        where, params = filters(tags=tags, customers=[customer_id])
        history = con.execute(
            f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM snapshots "  # noqa: S608 (fixed names)
            f"WHERE TRUE {where} ORDER BY tag_id, as_of",
            params,
        ).df()
    history = utc_columns(history, ["as_of"])
    current = history[history["as_of"] == ts].reset_index(drop=True)
    return CustomerRows(
        as_of=ts, dates=dates, run=run_info_of(run.iloc[0]), current=current, history=history
    )
