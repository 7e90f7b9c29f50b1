"""Window bounds found in one pass per event type (TypedEvents.ends_before, used by
Cutoff for the windowed and trend families) equal one ``searchsorted`` per window."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import features.cutoffs as feature_cutoffs
from features.event_arrays import REL_MAX, TypedEvents, prefix_sum
from features.events import prepare_events
from features.families.base import Cutoff


def _typed(per_customer: list[list[int]]) -> TypedEvents:
    """An index of one event type from each customer's relative seconds."""
    counts = np.array([len(s) for s in per_customer], dtype=np.int64)
    key = np.array(
        [(c << 32) | t for c, seconds in enumerate(per_customer) for t in sorted(seconds)],
        dtype=np.int64,
    )
    rows = np.arange(len(key), dtype=np.int32)
    return TypedEvents(key, prefix_sum(counts), 0, rows=rows)


@settings(max_examples=200, deadline=None)
@given(
    per_customer=st.lists(
        st.lists(st.integers(0, 400), max_size=12).map(sorted), min_size=1, max_size=40
    ),
    rels=st.lists(st.integers(0, 420), min_size=1, max_size=8, unique=True).map(sorted),
    picks=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_ends_before_equals_searchsorted(
    per_customer: list[list[int]], rels: list[int], picks: list[bool]
) -> None:
    typed = _typed(per_customer)
    codes = np.array([c for c in range(len(per_customer)) if picks[c]] or [0], dtype=np.int64)
    ends = typed.ends_before(codes, np.array(rels), np.int32)
    assert len(ends) == len(rels)
    for rel, found in zip(rels, ends, strict=True):
        want = np.searchsorted(typed.key, (codes << 32) | rel, side="left")
        assert found.dtype == np.int32
        np.testing.assert_array_equal(found, want)


def test_ends_before_over_many_blocks_and_the_key_range() -> None:
    """Blocks of customers (here thousands) and seconds at 0 and REL_MAX."""
    rng = np.random.default_rng(3)
    n = 5_000
    counts = rng.integers(0, 60, n)
    seconds = np.sort(rng.integers(0, 2**32 - 1, (n, 60)), axis=1)
    per_customer = [list(seconds[c, : counts[c]]) for c in range(n)]
    typed = _typed(per_customer)
    codes = np.flatnonzero(rng.random(n) < 0.7).astype(np.int64)
    rels = np.array([0, 1, 2**31, REL_MAX - 1, REL_MAX])
    ends = typed.ends_before(codes, rels, np.int64)
    for rel, found in zip(rels, ends, strict=True):
        want = np.searchsorted(typed.key, (codes << 32) | int(rel), side="left")
        np.testing.assert_array_equal(found, want)
    assert typed.ends_before(codes[:0], rels, np.int32)[0].shape == (0,)


def test_planned_bounds_equal_one_search_per_window() -> None:
    """A cutoff with a plan gives every planned and unplanned bound as a lone search,
    including a bound dropped by its readers and asked for again."""
    rng = np.random.default_rng(5)
    n = 300
    customers = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:04d}" for i in range(n)], dtype="string"),
            "signup_at": pd.to_datetime(["2023-01-01"] * n, utc=True).as_unit("us"),
        }
    )
    m = 6_000
    times = pd.Timestamp("2023-01-02", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 800 * 86_400, m), unit="s"
    )
    events = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:04d}" for i in rng.integers(0, n, m)], dtype="string"),
            "occurred_at": times.as_unit("us"),
            "event_type": pd.array(rng.choice(["purchase", "browse"], m), dtype="string"),
            "amount": np.where(rng.random(m) < 0.5, 10.0, np.nan),
            "category": pd.array([None] * m, dtype="string"),
            "order_id": pd.array([None] * m, dtype="string"),
        }
    )
    prep = prepare_events(customers, events)
    cut_us = pd.Timestamp("2024-06-01", tz="UTC").value // 1000
    codes = np.arange(n, dtype=np.int64)
    days = {0, 7, 14, 30, 60, 400, 1000, 5000}
    planned = Cutoff(prep, cut_us, codes, windows={"browse": days})
    alone = Cutoff(prep, cut_us, codes)
    for d in [*sorted(days), 3]:
        np.testing.assert_array_equal(planned.end("browse", d), alone.end("browse", d))
    planned.forget_ends("browse", from_days=1)
    np.testing.assert_array_equal(planned.end("browse", 30), alone.end("browse", 30))
    np.testing.assert_array_equal(planned.end("purchase", 7), alone.end("purchase", 7))
    assert planned.end("browse", 0).dtype == alone.end("browse", 0).dtype


def test_build_is_the_same_with_and_without_planned_bounds(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The default spec at several cutoffs: every column equal to one search per window."""
    from synthetic import generate

    data = generate(300, seed=11)
    cutoffs = ["2024-01-01", "2024-03-01", "2024-06-01"]
    planned = prepare_events(data.customers, data.events).build_features(cutoffs)
    monkeypatch.setattr(feature_cutoffs, "_window_days", lambda spec: {})
    alone = prepare_events(data.customers, data.events).build_features(cutoffs)
    pd.testing.assert_frame_equal(planned, alone)
