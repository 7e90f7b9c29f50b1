"""The seasonal index (training.season) and seasonally weighted time (scoring.season)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.season import operational_weeks, seasonal_inputs
from training.season import PurchaseDays, seasonal_index

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
    index = seasonal_index(events)
    busy, quiet = index[:3].mean(), index[3:].mean()
    assert busy / quiet == pytest.approx(2.0, rel=0.15)
    assert index.mean() == pytest.approx(1.0)


def test_flat_calendar_gives_a_flat_index() -> None:
    index = seasonal_index(_log(amplitude=0.0))
    assert np.abs(index - 1.0).max() < 0.1


def test_no_purchases_no_correction() -> None:
    empty = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="string"),
            "occurred_at": pd.Series([], dtype="datetime64[ns, UTC]"),
            "event_type": pd.Series([], dtype="string"),
        }
    )
    np.testing.assert_array_equal(seasonal_index(empty), np.ones(12))


def test_sampling_customers_keeps_the_index() -> None:
    events = _log(amplitude=1.0)
    full = seasonal_index(events)
    sampled = seasonal_index(events, max_customers=2_000, seed=1)
    np.testing.assert_allclose(sampled, full, atol=0.15)


def _fast_buyers_first(seed: int = 5, n: int = 4_000) -> pd.DataFrame:
    """No calendar at all, but customers differ tenfold in their rate, all are there
    from the first day, and their first purchase is their first Poisson event: the
    fast buyers are born in the first weeks, the slow ones all year long."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-01", "2023-12-31", freq="D")
    rows = []
    for c in range(n):
        rate = (0.05 if c % 2 else 0.5) / 7.0
        bought = np.flatnonzero(rng.random(days.size) < rate)
        rows.extend((f"c{c}", days[d]) for d in bought)
    frame = pd.DataFrame(rows, columns=["customer_id", "occurred_at"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["event_type"] = "purchase"
    return frame


def test_early_births_of_fast_buyers_are_not_a_busy_season() -> None:
    """The index conditions on each customer's own span and count, so a January full
    of fast buyers (who were born first) does not read as a busy January."""
    index = seasonal_index(_fast_buyers_first())
    assert np.abs(index - 1.0).max() < 0.1


def test_index_is_the_multinomial_maximum_likelihood() -> None:
    """Hand-checked: every customer buys on 2023-01-01 (first), 2023-01-20, 2023-02-10,
    2023-02-20 and 2023-03-01 (last). The interior days 2023-01-02..2023-02-28 hold 30
    January and 28 February days; one interior purchase in January for two in February
    means s_jan * 30 / (s_jan * 30 + s_feb * 28) = 1 / 3, so s_jan / s_feb = 28 / 60,
    scaled to mean 1 over the two covered months; the other months get 1."""
    ids = [f"c{i}" for i in range(200)]
    dates = ["2023-01-01", "2023-01-20", "2023-02-10", "2023-02-20", "2023-03-01"]
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, len(dates)),
            "occurred_at": pd.to_datetime(np.tile(dates, len(ids)), utc=True),
            "event_type": "purchase",
        }
    )
    ratio = 28.0 / 60.0
    want = np.ones(12)
    want[0], want[1] = 2.0 * ratio / (1.0 + ratio), 2.0 / (1.0 + ratio)
    np.testing.assert_allclose(seasonal_index(frame), want, rtol=1e-5)


def test_purchase_days_give_the_index_of_the_history_before_a_date() -> None:
    """The blend reduces the purchases once and asks for the index at two dates: the
    same index as the history cut at each date, sampled customers included; other
    event types are ignored."""
    events = _log(amplitude=1.0)
    noise = events.sample(frac=0.3, random_state=1).assign(event_type="page_view")
    noise["occurred_at"] -= pd.Timedelta(days=3)
    mixed = pd.concat([events, noise], ignore_index=True).sort_values("occurred_at")
    history = PurchaseDays(mixed)
    for cut in ("2023-09-01", "2024-03-15", "2025-01-01"):
        when = pd.Timestamp(cut, tz="UTC")
        before = mixed.loc[mixed["occurred_at"] < when]
        for customers, seed in ((50_000, 0), (1_500, 4)):
            np.testing.assert_array_equal(
                history.index(when, max_customers=customers, seed=seed),
                seasonal_index(before, max_customers=customers, seed=seed),
            )
    busy = history.index(pd.Timestamp("2025-01-01", tz="UTC"))
    assert busy[:3].mean() / busy[3:].mean() == pytest.approx(2.0, rel=0.15)
    assert len(history.codes) == len(events)


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
