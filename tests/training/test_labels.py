from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.schema import events_frame
from training.errors import TrainingError
from training.labels import label_table, plan_cutoffs, plan_training


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


# The label semantics as one SQL query (the original implementation): the oracle.
_LABEL_SQL = """
SELECT
    e.customer_id,
    c.cutoff,
    count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) AS n_purchases,
    count(DISTINCT CAST(e.occurred_at AS DATE))
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) AS n_purchase_days,
    (epoch(c.cutoff) - epoch(min(e.occurred_at)
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff))) / 86400.0
        AS days_since_first_purchase,
    (epoch(c.cutoff) - epoch(max(e.occurred_at)
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff))) / 86400.0
        AS days_since_last_purchase,
    coalesce(sum(e.amount) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff), 0)
        AS purchase_amount,
    coalesce(sum(e.amount) FILTER (e.event_type = 'refund' AND e.occurred_at < c.cutoff), 0)
        AS refund_amount,
    count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at >= c.cutoff)
        AS horizon_purchases,
    coalesce(sum(e.amount) FILTER (e.event_type = 'purchase' AND e.occurred_at >= c.cutoff), 0)
      - coalesce(sum(e.amount) FILTER (e.event_type = 'refund' AND e.occurred_at >= c.cutoff), 0)
        AS value
FROM ev AS e
JOIN cutoffs AS c ON e.occurred_at < c.cutoff + to_days(CAST(c.horizon_days AS INTEGER))
WHERE e.event_type IN ('purchase', 'refund')
GROUP BY e.customer_id, c.cutoff
HAVING count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) > 0
ORDER BY c.cutoff, e.customer_id
"""


def _sql_labels(
    events: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon_days: int
) -> pd.DataFrame:
    ev = events[["customer_id", "occurred_at", "event_type", "amount"]]
    cut = pd.DataFrame(
        {
            "cutoff": pd.Series(cutoffs, dtype="datetime64[us, UTC]"),
            "horizon_days": horizon_days,
        }
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("ev", ev)
        con.register("cutoffs", cut)
        return con.sql(_LABEL_SQL).to_arrow_table().to_pandas()
    finally:
        con.close()


_BASE = _ts("2024-03-01")
_CUTOFFS = [_BASE, _BASE + pd.Timedelta(days=20), _BASE + pd.Timedelta(days=45, hours=6)]
_HORIZON = 30
# Times near every boundary: cutoffs, horizon ends, UTC midnights.
_EDGES = [
    c + pd.Timedelta(days=d) + pd.Timedelta(microseconds=u)
    for c in _CUTOFFS
    for d in (0, _HORIZON)
    for u in (-1, 0, 1)
]


@st.composite
def _event_records(draw: st.DrawFn) -> list[dict[str, object]]:
    n = draw(st.integers(0, 60))
    records: list[dict[str, object]] = []
    for _ in range(n):
        if draw(st.booleans()):
            at = draw(st.sampled_from(_EDGES))
        else:
            at = _BASE + pd.Timedelta(
                seconds=draw(st.integers(-60 * 86_400, 90 * 86_400)),
                microseconds=draw(st.sampled_from([0, 1, 500_000])),
            )
        kind = draw(st.sampled_from(["purchase", "purchase", "refund", "browse"]))
        amount = draw(st.one_of(st.none(), st.floats(0, 500, allow_nan=False)))
        records.append(
            {
                "customer_id": draw(st.sampled_from(["a", "b", "c", "d10", "d9"])),
                "occurred_at": at,
                "event_type": kind,
                "amount": amount,
            }
        )
    return records


@settings(max_examples=150, deadline=None)
@given(records=_event_records(), shuffle=st.booleans())
def test_label_table_matches_the_sql_query(records: list[dict[str, object]], shuffle: bool) -> None:
    events = events_frame(
        records or [{"customer_id": "a", "occurred_at": _BASE, "event_type": "browse"}]
    )
    if not shuffle:
        events = events.sort_values("occurred_at", kind="stable", ignore_index=True)
    got = label_table(events, _CUTOFFS, horizon_days=_HORIZON)
    expected = _sql_labels(events, _CUTOFFS, _HORIZON)
    assert list(got.columns) == [*expected.columns, "churn"]
    assert len(got) == len(expected)
    if len(got):
        assert list(got["customer_id"]) == list(expected["customer_id"])
        np.testing.assert_array_equal(
            got["cutoff"].to_numpy(), pd.to_datetime(expected["cutoff"], utc=True).to_numpy()
        )
        for column in expected.columns[2:]:
            np.testing.assert_allclose(
                got[column].to_numpy(dtype=float),
                expected[column].to_numpy(dtype=float),
                rtol=1e-12,
                atol=1e-9,
                err_msg=column,
            )
        assert (got["churn"] == (got["horizon_purchases"] == 0)).all()


def test_plan_training_falls_back_to_customer_groups_on_short_history() -> None:
    # One year of history, a 181-day question: no room for three horizons in a row.
    first, last = _ts("2023-01-01"), _ts("2023-12-31 18:00")
    with pytest.raises(TrainingError):
        plan_cutoffs(first, last, horizon_days=181)
    plan = plan_training(first, last, horizon_days=181, n_cutoffs=6, min_history_days=60)
    assert plan.grouped
    assert plan.test == plan.validation == _ts("2024-01-01") - pd.Timedelta(days=181)
    assert plan.test + plan.horizon == _ts("2024-01-01")
    assert plan.train[-1] == plan.test
    assert all(c >= first + pd.Timedelta(days=60) for c in plan.train)
    assert list(plan.train) == sorted(plan.train)
    assert len(plan.train) == 5  # monthly steps back to 60 days after the first purchase
    assert plan.all == list(plan.train)
    # A history long enough for a time split keeps it.
    assert not plan_training(
        _ts("2022-01-03"), _ts("2024-06-30"), horizon_days=90, min_history_days=60
    ).grouped
    with pytest.raises(TrainingError, match="at least 241 days"):
        plan_training(first, _ts("2023-08-01"), horizon_days=181, min_history_days=60)
