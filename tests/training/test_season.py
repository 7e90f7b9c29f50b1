"""The seasonal index (training.season) and seasonally weighted time (scoring.season)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.season import operational_weeks, seasonal_inputs
from training.season import expected_since_birth, seasonal_index

PARAMS = (2.0, 8.0, 0.5, 40.0)  # r, alpha (weeks), s, beta (weeks)


def _log(amplitude: float, seed: int = 3, n: int = 4_000) -> pd.DataFrame:
    """Customers born uniformly over 2023 who buy at Poisson rate 0.25/week times a
    calendar factor 1 + amplitude (January to March) or 1 (other months), for ever."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    factor = np.where(days.month <= 3, 1.0 + amplitude, 1.0)
    rows = []
    births = rng.integers(0, 365, n)
    for c, b in enumerate(births):
        rate = 0.25 / 7.0 * factor[b:]
        bought = np.flatnonzero(rng.random(rate.size) < rate) + b
        for d in [b, *bought[bought > b]]:
            rows.append((f"c{c}", days[d]))
    frame = pd.DataFrame(rows, columns=["customer_id", "occurred_at"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["event_type"] = "purchase"
    return frame


def test_index_finds_the_busy_quarter() -> None:
    events = _log(amplitude=1.0)
    # A homogeneous model with the simulated rate and no attrition (s tiny, beta huge).
    index = seasonal_index(events, (50.0, 200.0, 1e-6, 1e9))
    busy, quiet = index[:3].mean(), index[3:].mean()
    assert busy / quiet == pytest.approx(2.0, rel=0.15)
    assert index.mean() == pytest.approx(1.0)


def test_flat_calendar_gives_a_flat_index() -> None:
    index = seasonal_index(_log(amplitude=0.0), (50.0, 200.0, 1e-6, 1e9))
    assert np.abs(index - 1.0).max() < 0.1


def test_no_purchases_no_correction() -> None:
    empty = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="string"),
            "occurred_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "event_type": pd.Series([], dtype="string"),
        }
    )
    np.testing.assert_array_equal(seasonal_index(empty, PARAMS), np.ones(12))


def test_sampling_customers_keeps_the_index() -> None:
    events = _log(amplitude=1.0)
    full = seasonal_index(events, (50.0, 200.0, 1e-6, 1e9))
    sampled = seasonal_index(events, (50.0, 200.0, 1e-6, 1e9), max_customers=2_000, seed=1)
    np.testing.assert_allclose(sampled, full, atol=0.15)


def test_expected_since_birth_is_the_pareto_mean() -> None:
    r, alpha, s, beta = PARAMS
    t = np.array([-1.0, 0.0, 10.0, 52.0])
    want = r / alpha * beta / (s - 1.0) * (1.0 - (beta / (beta + np.maximum(t, 0))) ** (s - 1.0))
    np.testing.assert_allclose(expected_since_birth(PARAMS, t), want)
    # s = 1: the logarithmic limit.
    one = expected_since_birth((r, alpha, 1.0, beta), np.array([10.0]))
    assert one[0] == pytest.approx(r / alpha * beta * np.log1p(10.0 / beta))


def test_operational_time_weights_each_day_by_its_month() -> None:
    flat = np.ones(12)
    origin = pd.Timestamp("2024-01-01", tz="UTC")
    np.testing.assert_allclose(
        operational_weeks(flat, origin, np.array([-70.0, 0.0, 14.0])), [-10.0, 0.0, 2.0]
    )
    busy_january = np.where(np.arange(12) == 0, 3.0, 1.0)
    # 7 January days count three times; 7 December days once.
    np.testing.assert_allclose(
        operational_weeks(busy_january, origin, np.array([7.0, -7.0])), [3.0, -1.0]
    )


def test_seasonal_inputs_keep_the_btyd_order() -> None:
    index = np.linspace(0.5, 1.5, 12)
    t_x, big_t, h = seasonal_inputs(
        index,
        pd.Timestamp("2024-01-01", tz="UTC"),
        recency_days=np.array([0.0, 30.0, 400.0, np.nan]),
        age_days=np.array([100.0, 200.0, 300.0, 50.0]),
        horizon_days=181,
    )
    assert np.all(t_x >= 0)
    assert np.all(t_x <= big_t + 1e-12)
    assert t_x[0] == pytest.approx(big_t[0])  # bought on the last day
    assert t_x[2] == 0.0  # recency beyond age: clipped to the first purchase
    assert h == pytest.approx(operational_weeks(index, pd.Timestamp("2024-01-01"), [181.0])[0])
