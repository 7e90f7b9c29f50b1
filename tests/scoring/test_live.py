"""The live scoring fast path agrees with the batch code (parity oracle) and checks facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.errors import FeaturesError, SchemaError
from features.schema import FactsConfig
from scoring.live import LiveScorer
from scoring.live_records import NAT, frame_records, micros_of
from synthetic import generate
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.engine import evaluate_tags

from .conftest import sorted_text

AS_OF = pd.Timestamp("2024-09-01", tz="UTC")


@pytest.fixture(scope="module")
def data() -> Any:
    return generate(120, start="2024-01-01", end="2024-09-30", seed=11)


def test_parity_with_the_batch_code_in_any_event_order(data: Any, scorer: LiveScorer) -> None:
    ids = sorted(data.customers["customer_id"])[:40]
    customers = data.customers[data.customers["customer_id"].isin(ids)]
    events = data.events[data.events["customer_id"].isin(ids)]
    expected = build_features(customers, events, as_of=AS_OF)
    expected_tags = evaluate_tags(expected, events, scorer.catalogue, as_of=AS_OF)  # type: ignore[arg-type]

    shuffled = events.sample(frac=1.0, random_state=0)  # time-ordered logs, mixed ids
    result = scorer.score(frame_records(customers), frame_records(shuffled), as_of=AS_OF)

    pd.testing.assert_frame_equal(
        result.features.reset_index(drop=True), expected.reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(sorted_text(result.rule_tags), sorted_text(expected_tags))
    signed_up_later = set(customers["customer_id"]) - set(expected["customer_id"])
    assert set(result.skipped) == signed_up_later
    assert result.as_of == AS_OF


def test_iso_text_records_and_one_customer(data: Any, scorer: LiveScorer) -> None:
    counts = data.events["customer_id"].value_counts()
    cid = str(counts.index[0])
    customer = data.customers[data.customers["customer_id"] == cid]
    events = data.events[data.events["customer_id"] == cid]
    expected = build_features(customer, events, as_of=AS_OF)
    records = frame_records(events)
    for r in records:
        r["occurred_at"] = r["occurred_at"].isoformat()
    got = scorer.features(frame_records(customer), records, as_of="2024-09-01")
    pd.testing.assert_frame_equal(got, expected)
    none = scorer.features(frame_records(customer), [], as_of=AS_OF)
    assert none["frequency_orders"].tolist() == [0]


def test_plain_datetime_records_as_the_service_posts_them(data: Any, scorer: LiveScorer) -> None:
    """``POST /score`` hands over pydantic's datetimes (aware in any offset, or naive
    meaning UTC), not pandas Timestamps: same features as the batch code."""
    counts = data.events["customer_id"].value_counts()
    cid = str(counts.index[0])
    customer = data.customers[data.customers["customer_id"] == cid]
    events = data.events[data.events["customer_id"] == cid]
    expected = build_features(customer, events, as_of=AS_OF)
    records = frame_records(events)
    plus_two = timezone(timedelta(hours=2))
    for i, r in enumerate(records):
        stamp = r["occurred_at"].to_pydatetime()
        # Naive, UTC and +02:00 in turn: the same instants.
        r["occurred_at"] = (
            stamp.replace(tzinfo=None)
            if i % 3 == 0
            else stamp.astimezone(plus_two)
            if i % 3 == 1
            else stamp
        )
        assert type(r["occurred_at"]) is datetime
    got = scorer.features(frame_records(customer), records, as_of=AS_OF)
    pd.testing.assert_frame_equal(got, expected)


def test_micros_of_datetimes_equals_the_pandas_reading() -> None:
    minus_five = timezone(timedelta(hours=-5, minutes=-30))
    values = [
        datetime(2024, 3, 5, 7, 8, 9, 123456),
        datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=minus_five),
        datetime(2300, 1, 1, tzinfo=minus_five),  # past pandas' nanosecond range
        datetime(1, 1, 1),
        None,
    ]
    got = micros_of(values, "occurred_at", nullable=True)
    expected = [
        NAT
        if v is None
        else (v.replace(tzinfo=v.tzinfo or UTC) - datetime(1970, 1, 1, tzinfo=UTC))
        // timedelta(microseconds=1)
        for v in values
    ]
    assert got.tolist() == expected
    # pandas Timestamps (the fact store's records) read the same instants.
    stamps = [pd.Timestamp(v) for v in values[:3]]
    assert got[:3].tolist() == micros_of(stamps, "occurred_at").tolist()


@dataclass
class _Model:
    """The model protocol: scores the recency feature, labels by threshold."""

    name: str = "churn-predictor"
    version: str = "7"
    tag_id: str = "churn_risk"
    calls: int = 0

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        return features[["recency_days"]].to_numpy(dtype=np.float64, na_value=np.nan)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.nan_to_num(matrix[:, 0], nan=999.0) / 1000.0

    def label(self, scores: np.ndarray) -> list[str]:
        return ["high" if s > 0.1 else "low" for s in scores]


def test_models_predict_once_per_batch(data: Any, scorer: LiveScorer) -> None:
    ids = sorted(data.customers["customer_id"])[:25]
    customers = data.customers[data.customers["customer_id"].isin(ids)]
    events = data.events[data.events["customer_id"].isin(ids)]
    model = _Model()
    result = scorer.score(
        frame_records(customers),
        frame_records(events),
        as_of=AS_OF,
        models={"churn-predictor": model},
    )
    assert model.calls == 1
    prediction = result.predictions["churn-predictor"]
    assert (prediction.name, prediction.version, prediction.tag_id) == (
        "churn-predictor",
        "7",
        "churn_risk",
    )
    assert len(prediction.scores) == len(result.features) == len(prediction.labels)
    row = result.row_of(str(result.features["customer_id"].iloc[3]))
    assert row == 3
    recency = result.features["recency_days"].iloc[3]
    assert prediction.scores[3] == pytest.approx((999.0 if recency != recency else recency) / 1e3)
    assert result.row_of("nobody") is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"event_type": "teleport"}, "event_type among"),
        ({"event_type": "purchase", "amount": None}, "amount on every purchase"),
        ({"event_type": "purchase", "amount": -1.0}, "finite numbers >= 0"),
        ({"event_type": "purchase", "amount": 9.3e14}, "must be <= 1e\\+12"),
        ({"event_type": "login", "occurred_at": "yesterday"}, "ISO 8601"),
        ({"event_type": "login", "occurred_at": None}, "missing one"),
    ],
)
def test_facts_that_break_the_contract_are_refused(
    scorer: LiveScorer, event: dict[str, Any], message: str
) -> None:
    customer = {"customer_id": "k1", "signup_at": pd.Timestamp("2024-01-01", tz="UTC")}
    record = {"customer_id": "k1", "occurred_at": "2024-02-01T10:00:00Z"} | event
    with pytest.raises(SchemaError, match=message):
        scorer.score([customer], [record], as_of=AS_OF)


def test_blank_or_repeated_ids_and_bad_cutoffs_are_refused(scorer: LiveScorer) -> None:
    when = pd.Timestamp("2024-01-01", tz="UTC")
    with pytest.raises(SchemaError, match="non-empty customer_id"):
        scorer.score([{"customer_id": " ", "signup_at": when}], [], as_of=AS_OF)
    twice = [{"customer_id": "k1", "signup_at": when}] * 2
    with pytest.raises(SchemaError, match="each customer once"):
        scorer.score(twice, [], as_of=AS_OF)
    with pytest.raises(FeaturesError, match="whole second"):
        scorer.score([twice[0]], [], as_of="2024-09-01T00:00:00.5")


def test_frame_records_are_request_records() -> None:
    """Missing values of every kind become None; times stay Timestamps; names are text."""
    frame = pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b"], dtype="string"),
            "signup_at": pd.to_datetime(["2024-01-01", None], utc=True),
            "birth_year": pd.array([1990, None], dtype="Int64"),
            "score": [1.5, np.nan],
        }
    )
    assert frame_records(frame) == [
        {
            "customer_id": "a",
            "signup_at": pd.Timestamp("2024-01-01", tz="UTC"),
            "birth_year": 1990,
            "score": 1.5,
        },
        {"customer_id": "b", "signup_at": None, "birth_year": None, "score": None},
    ]


def test_orders_are_counted_as_the_batch_index_counts_them(scorer: LiveScorer) -> None:
    """The live index keys order ids by dictionary codes: purchases without an order id
    are orders of their own, an id seen again later (not adjacent) is the same order, and
    the same id at two customers is two orders; features reading order counts match."""
    customers = [
        {"customer_id": c, "signup_at": pd.Timestamp("2024-01-01", tz="UTC")} for c in ("a", "b")
    ]
    plan = [  # (customer, day, order id)
        ("a", 1, "o1"),
        ("a", 2, None),
        ("a", 3, "o2"),
        ("a", 4, "o1"),
        ("a", 5, None),
        ("a", 6, "o2"),
        ("a", 6, "o3"),
        ("b", 2, "o1"),
        ("b", 3, "o1"),
        ("b", 9, None),
    ]
    events = [
        {
            "customer_id": c,
            "occurred_at": pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(days=d),
            "event_type": "purchase",
            "amount": 10.0 + d,
            "order_id": o,
        }
        for c, d, o in plan
    ]
    got = scorer.features(customers, events, as_of=AS_OF)
    expected = build_features(
        scorer.customers_frame(customers), scorer.events_frame(events), as_of=AS_OF
    )
    pd.testing.assert_frame_equal(got, expected)
    assert got["frequency_orders"].tolist() == [5, 2]


def test_warm_scores_a_made_up_customer_once() -> None:
    """warm() runs the whole call (rules checked, every model scored) on made-up facts."""
    live = LiveScorer(catalogue=Catalogue.load(LIBRARY_DIR), facts=FactsConfig())
    model = _Model()
    result = live.warm({"churn-predictor": model})
    assert result.customer_ids == ["warm-up"]
    assert model.calls == 1
    assert result.columns.columns["frequency_orders"].tolist() == [1]
    assert result.tag_values  # the catalogue's rules were evaluated
