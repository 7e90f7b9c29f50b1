"""Feature building takes events in any order: a log in time order, the fact store's
order (customer, then time) and a shuffle give identical features, also on the paths
that only larger inputs take (every row's customer looked up, not one per run, and each
type sorted by customer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.coding import customer_runs
from features.events import prepare_events
from synthetic import generate

# Enough events for the per-row lookup (short runs are detected from 100,000 rows on).
_CUSTOMERS = 4_000


@pytest.fixture(scope="module")
def facts() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = generate(_CUSTOMERS, seed=5, start="2023-01-01", end="2024-06-30")
    events = data.events.sort_values("occurred_at", kind="stable", ignore_index=True)
    assert len(events) > 110_000
    return data.customers, events


def _orders(events: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(2)
    return {
        "time": events,
        "store": events.sort_values(
            ["customer_id", "occurred_at"], kind="stable", ignore_index=True
        ),
        "shuffled": events.iloc[rng.permutation(len(events))].reset_index(drop=True),
    }


def _cutoffs() -> list[pd.Timestamp]:
    return [pd.Timestamp(f"2024-{m:02d}-01", tz="UTC") for m in (1, 3, 6)]


def test_time_store_and_shuffled_orders_give_identical_features(
    facts: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    customers, events = facts
    # The paths under test: every row of the log looked up, not one per run.
    ids = pa.chunked_array([pa.array(events["customer_id"].to_numpy(dtype=object))])
    heads, _ = customer_runs(ids, pa.array(sorted(customers["customer_id"])))
    assert len(heads) == len(events)
    built = {
        name: prepare_events(customers, ordered).build_features(_cutoffs())
        for name, ordered in _orders(events).items()
    }
    assert len(built["time"]) > 3 * 1000
    pd.testing.assert_frame_equal(built["time"], built["store"])
    pd.testing.assert_frame_equal(built["shuffled"], built["store"])


def test_sub_second_times_unknown_customers_and_ties_in_any_order(
    facts: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    customers, events = facts
    events = events.copy()
    rng = np.random.default_rng(9)
    n = len(events)
    # Microseconds on some events, exact ties on others, and customers nobody knows.
    some = rng.random(n) < 0.05
    events.loc[some, "occurred_at"] += pd.to_timedelta(rng.integers(1, 999_999, some.sum()), "us")
    tie = np.flatnonzero(rng.random(n) < 0.05)
    events.loc[tie[1:], "occurred_at"] = events["occurred_at"].to_numpy()[tie[:-1]]
    ghosts = rng.random(n) < 0.03
    events.loc[ghosts, "customer_id"] = [f"ghost-{k}" for k in range(ghosts.sum())]
    events = events.sort_values("occurred_at", kind="stable", ignore_index=True)
    built = {
        name: prepare_events(customers, ordered).build_features(_cutoffs())
        for name, ordered in _orders(events).items()
    }
    pd.testing.assert_frame_equal(built["time"], built["store"])
    pd.testing.assert_frame_equal(built["shuffled"], built["store"])
