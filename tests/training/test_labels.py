from __future__ import annotations

import pandas as pd
import pytest

from features.schema import events_frame
from training.errors import TrainingError
from training.labels import label_table, plan_cutoffs


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _events() -> pd.DataFrame:
    return events_frame(
        [
            {
                "customer_id": "a",
                "occurred_at": "2024-01-05",
                "event_type": "purchase",
                "amount": 10,
            },
            {
                "customer_id": "a",
                "occurred_at": "2024-01-05 18:00",
                "event_type": "purchase",
                "amount": 4,
            },
            {
                "customer_id": "a",
                "occurred_at": "2024-02-01",
                "event_type": "purchase",
                "amount": 20,
            },
            {"customer_id": "a", "occurred_at": "2024-02-10", "event_type": "refund", "amount": 5},
            # b buys exactly at the cutoff: that is outcome, not history.
            {
                "customer_id": "b",
                "occurred_at": "2024-02-01",
                "event_type": "purchase",
                "amount": 7,
            },
            {"customer_id": "b", "occurred_at": "2024-01-20", "event_type": "browse"},
            {
                "customer_id": "c",
                "occurred_at": "2024-01-10",
                "event_type": "purchase",
                "amount": 3,
            },
            # c's next purchase is one day past the 30-day horizon.
            {
                "customer_id": "c",
                "occurred_at": "2024-03-02",
                "event_type": "purchase",
                "amount": 9,
            },
        ]
    )


def test_label_table_by_hand() -> None:
    got = label_table(_events(), [_ts("2024-02-01")], horizon_days=30).set_index("customer_id")
    assert list(got.index) == ["a", "c"]  # b has no purchase before the cutoff
    a, c = got.loc["a"], got.loc["c"]
    assert (a["n_purchases"], a["n_purchase_days"]) == (2, 1)
    assert a["purchase_amount"] == 14.0
    assert a["days_since_first_purchase"] == pytest.approx(27.0)
    assert a["days_since_last_purchase"] == pytest.approx(26.25)
    assert a["horizon_purchases"] == 1
    assert not a["churn"]
    assert a["value"] == pytest.approx(15.0)  # 20 bought at the cutoff, 5 refunded
    assert c["churn"]
    assert c["value"] == 0.0
    assert str(got["cutoff"].dtype) == "datetime64[us, UTC]"


def test_label_table_stacks_cutoffs() -> None:
    got = label_table(_events(), [_ts("2024-01-07"), _ts("2024-02-02")], horizon_days=30)
    assert got.groupby("cutoff")["customer_id"].apply(list).to_dict() == {
        _ts("2024-01-07"): ["a"],
        _ts("2024-02-02"): ["a", "b", "c"],
    }


def test_plan_has_no_overlapping_horizons() -> None:
    plan = plan_cutoffs(_ts("2022-01-03"), _ts("2024-06-30 13:00"), horizon_days=90, n_cutoffs=6)
    assert plan.test == _ts("2024-07-01") - pd.Timedelta(days=90)
    assert plan.validation + plan.horizon <= plan.test
    assert all(c + plan.horizon <= plan.validation for c in plan.train)
    assert len(plan.train) == 4
    assert list(plan.train) == sorted(plan.train)


def test_horizon_longer_than_history_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="longer than the 400-day label horizon"):
        plan_cutoffs(_ts("2024-01-01"), _ts("2024-12-01"), horizon_days=400)
    with pytest.raises(TrainingError, match="at least 270 days"):
        plan_cutoffs(_ts("2024-01-01"), _ts("2024-08-01"), horizon_days=90)


def test_explicit_cutoffs_are_checked() -> None:
    first, last = _ts("2022-01-01"), _ts("2024-06-30")
    plan = plan_cutoffs(
        first,
        last,
        horizon_days=30,
        cutoffs=["2024-03-01", "2024-01-01", "2024-05-01", "2023-12-01"],
    )
    assert plan.test == _ts("2024-05-01")
    assert plan.validation == _ts("2024-03-01")
    with pytest.raises(TrainingError, match="not known yet"):
        plan_cutoffs(
            first, last, horizon_days=30, cutoffs=["2024-01-01", "2024-02-01", "2024-06-15"]
        )
    with pytest.raises(TrainingError, match="test-period outcomes"):
        plan_cutoffs(
            first, last, horizon_days=30, cutoffs=["2023-01-01", "2024-04-15", "2024-05-01"]
        )
    with pytest.raises(TrainingError, match="reach past it"):
        plan_cutoffs(
            first, last, horizon_days=30, cutoffs=["2024-03-20", "2024-04-01", "2024-05-01"]
        )
