"""The windowed and trend kernel: every window of a type in one vectorised pass
(``windowed.window_columns`` over all windows, the live path's few customers) gives
the columns of the loop over windows it replaced, and of one window at a time (what
long builds run), on random events, windows and cutoffs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.event_arrays import AMOUNT_SCALE
from features.events import prepare_events
from features.families import windowed
from features.families.base import Cutoff
from features.spec import FeatureSpec

_DAY_S = 86_400
_START = pd.Timestamp("2023-01-01", tz="UTC")


def _loop(cut: Cutoff, spec: FeatureSpec, etype: str) -> dict[str, np.ndarray]:
    """The per-window loop the kernel replaced (one window's columns at a time)."""
    out: dict[str, np.ndarray] = {}
    for w in spec.windows:
        last = cut.count(etype, w)
        if spec.has("windowed"):
            out[f"{etype}_count_{w}d"] = last
            if etype in spec.amount_event_types:
                out[f"{etype}_amount_{w}d"] = cut.amount(etype, w)
        if spec.has("trend"):
            prev = cut.end(etype, w) - cut.end(etype, 2 * w)
            both = last + prev
            trend = np.zeros(len(last), dtype=np.float32)
            np.divide(last - prev, both, out=trend, where=both > 0)
            out[f"{etype}_count_trend_{w}d"] = trend
    return out


def _prepared(seconds: list[tuple[int, int, int, int]], n: int) -> Any:
    """An index of ``n`` customers from (customer, second, type, cents) events."""
    customers = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:03d}" for i in range(n)], dtype="string"),
            "signup_at": pd.to_datetime(["2022-06-01"] * n, utc=True).as_unit("us"),
        }
    )
    types = ["purchase", "browse", "refund"]
    events = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{c:03d}" for c, _, _, _ in seconds], dtype="string"),
            "occurred_at": (
                _START + pd.to_timedelta([s for _, s, _, _ in seconds], unit="s")
            ).as_unit("us"),
            "event_type": pd.array([types[t] for _, _, t, _ in seconds], dtype="string"),
            "amount": [
                cents / 100 if types[t] != "browse" else np.nan for _, _, t, cents in seconds
            ],
            "category": pd.array([None] * len(seconds), dtype="string"),
            "order_id": pd.array([None] * len(seconds), dtype="string"),
        }
    )
    return prepare_events(customers, events)


def _assert_same(found: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    assert set(found) == set(want)
    for name, values in want.items():
        got = np.asarray(found[name])
        assert got.dtype == values.dtype, name
        np.testing.assert_array_equal(got, values, err_msg=name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6),
    events=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.integers(0, 700 * _DAY_S),
            st.integers(0, 2),
            st.integers(0, 10**6),
        ),
        max_size=80,
    ),
    windows=st.lists(st.integers(1, 400), min_size=1, max_size=6, unique=True).map(sorted),
    cut_day=st.integers(0, 760),
    families=st.sampled_from([["windowed", "trend"], ["windowed"], ["trend"]]),
)
def test_all_windows_at_once_equal_the_loop_over_windows(
    n: int,
    events: list[tuple[int, int, int, int]],
    windows: list[int],
    cut_day: int,
    families: list[str],
) -> None:
    prep = _prepared([(c % n, s, t, a) for c, s, t, a in events], n)
    spec = FeatureSpec(families=families, windows=windows)
    cut_us = (_START + pd.Timedelta(days=cut_day)).value // 1000
    codes = np.arange(n, dtype=np.int64)
    for etype in prep.event_types:
        want = _loop(Cutoff(prep, cut_us, codes), spec, etype)
        # All windows in one pass, with and without the cutoff's planned bounds.
        plan = {etype: {0, *windows, *(2 * w for w in windows)}}
        for cut in (Cutoff(prep, cut_us, codes), Cutoff(prep, cut_us, codes, windows=plan)):
            _assert_same(windowed.window_columns(cut, spec, etype, windows), want)
        # One window at a time (a long build's groups).
        cut = Cutoff(prep, cut_us, codes)
        each: dict[str, Any] = {}
        for w in windows:
            each.update(windowed.window_columns(cut, spec, etype, [w]))
        _assert_same(each, want)


def test_columns_groups_by_size(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Up to ALL_WINDOWS_ROWS customers one group per type, above it one per window;
    both give the same columns, and the amounts are the fixed-point sums."""
    rng = np.random.default_rng(7)
    n = 40
    events = [
        (int(c), int(s), int(t), int(a))
        for c, s, t, a in zip(
            rng.integers(0, n, 600),
            rng.integers(0, 700 * _DAY_S, 600),
            rng.integers(0, 3, 600),
            rng.integers(0, 10**5, 600),
            strict=True,
        )
    ]
    prep = _prepared(events, n)
    spec = FeatureSpec()
    cut_us = (_START + pd.Timedelta(days=700)).value // 1000
    codes = np.arange(n, dtype=np.int64)
    together = list(windowed.columns(Cutoff(prep, cut_us, codes), spec, "purchase"))
    monkeypatch.setattr(windowed, "ALL_WINDOWS_ROWS", n - 1)
    apart = list(windowed.columns(Cutoff(prep, cut_us, codes), spec, "purchase"))
    assert len(together) == 1
    assert len(apart) == len(spec.windows)
    merged = {k: v for group in apart for k, v in group.items()}
    _assert_same(together[0], merged)
    cut = Cutoff(prep, cut_us, codes)
    cs = prep.amounts("purchase")[0]
    w = spec.windows[1]
    lo, hi = cut.end("purchase", w), cut.end("purchase")
    np.testing.assert_array_equal(
        together[0][f"purchase_amount_{w}d"], (cs[hi] - cs[lo]) / AMOUNT_SCALE
    )
