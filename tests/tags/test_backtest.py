"""Backtesting against hand-computed precision, recall and lift."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.schema import customers_frame
from tags.backtest import (
    backtest,
    backtest_dates,
    outcome_labels,
    parse_every,
    parse_outcome,
)
from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.errors import BacktestError
from tests.tags.conftest import EVENT_TYPES, make_events

CUSTOMERS = customers_frame(
    [{"customer_id": c, "signup_at": "2024-01-01"} for c in "abcd"]
    + [{"customer_id": "e", "signup_at": "2024-03-15"}]
)
EVENTS = make_events(
    [
        {"customer_id": c, "occurred_at": day, "event_type": "purchase"}
        for c, day in [
            ("a", "2024-01-10"),
            ("a", "2024-02-20"),
            ("a", "2024-03-20"),
            ("b", "2024-01-05"),
            ("c", "2024-01-10"),
            ("c", "2024-03-25"),
        ]
    ]
)
QUIET = TagDefinition.model_validate(
    {
        "id": "quiet",
        "display_name": "behaviour_quiet",
        "category": "behaviour",
        "description": "No purchase in the last 30 days.",
        "owner": "tests",
        "source": "rule",
        "value_type": "boolean",
        "status": "active",
        "rule": "count(purchase, last 30 days) = 0",
    }
)
CATALOGUE = Catalogue.from_definitions([QUIET])
seen_cutoffs: list[pd.Timestamp] = []


def build(customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """A minimal point-in-time feature builder that checks it sees no future events."""
    assert (events["occurred_at"] < as_of).all()
    seen_cutoffs.append(as_of)
    alive = customers[customers["signup_at"] < as_of]
    return pd.DataFrame({"customer_id": alive["customer_id"].reset_index(drop=True)})


def test_matches_hand_computed_metrics() -> None:
    outcome = parse_outcome("no_purchase_30d", EVENT_TYPES)
    result = backtest(
        "quiet",
        CATALOGUE,
        CUSTOMERS,
        EVENTS,
        dates=["2024-02-01", "2024-03-01", "2024-04-01"],
        outcome=outcome,
        build=build,
        observed_until="2024-04-15",
    )
    first, second, third = result.points
    # 02-01: only d is quiet; b, c, d buy nothing in the next 30 days.
    assert (first.population, first.tagged, first.positives, first.true_positives) == (4, 1, 3, 1)
    assert first.precision == 1.0
    assert first.recall == pytest.approx(1 / 3)
    assert first.lift == pytest.approx(1 / 0.75)
    # 03-01: b, c, d quiet; a and c buy in March.
    assert (second.tagged, second.positives, second.true_positives) == (3, 2, 2)
    assert second.precision == pytest.approx(2 / 3)
    assert second.recall == 1.0
    assert second.lift == pytest.approx((2 / 3) / 0.5)
    # 04-01: e has signed up; the 30-day window ends after the data: incomplete.
    assert (third.population, third.tagged, third.complete) == (5, 3, False)
    assert math.isnan(third.precision)
    summary = result.summary()
    assert summary["dates"] == 2
    assert summary["precision"] == pytest.approx((1 + 2 / 3) / 2)
    frame = result.to_frame()
    assert list(frame["tagged"]) == [1, 3, 3]


def test_outcome_labels_window_is_half_open() -> None:
    outcome = parse_outcome("purchase_10d", EVENT_TYPES)
    ids = pd.Series(["a", "b", "c"])

    def labels(day: str) -> list[bool]:
        stamp = pd.Timestamp(day, tz="UTC")
        return outcome_labels(EVENTS, ids, as_of=stamp, outcome=outcome).tolist()

    # [03-15, 03-25) holds a's 03-20 but not c's 03-25; [03-16, 03-26) holds both.
    assert labels("2024-03-15") == [True, False, False]
    assert labels("2024-03-16") == [True, False, True]
    absent = parse_outcome("no_purchase_10d", EVENT_TYPES)
    stamp = pd.Timestamp("2024-03-16", tz="UTC")
    assert outcome_labels(EVENTS, ids, as_of=stamp, outcome=absent).tolist() == [
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("purchase_90", "like [no_]EVENT_Nd"),
        ("no_purchse_90d", "Did you mean 'purchase'?"),
        ("purchase_0d", "1 to 3650"),
    ],
)
def test_outcome_names_are_checked(name: str, fragment: str) -> None:
    with pytest.raises(BacktestError, match=fragment.replace("[", r"\[").replace("?", r"\?")):
        parse_outcome(name, EVENT_TYPES)


def test_dates_and_steps() -> None:
    assert parse_every("30d") == 30
    assert parse_every("2w") == 14
    with pytest.raises(BacktestError):
        parse_every("monthly")
    dates = backtest_dates("2024-01-01", "2024-03-01", 30)
    assert [d.strftime("%m-%d") for d in dates] == ["01-01", "01-31", "03-01"]
    with pytest.raises(BacktestError, match="on or after"):
        backtest_dates("2024-02-01", "2024-01-01", 30)


def test_multi_valued_tag_needs_a_value(library: Catalogue) -> None:
    outcome = parse_outcome("no_purchase_30d", EVENT_TYPES)
    with pytest.raises(BacktestError, match="--value"):
        backtest(
            "lifecycle_stage",
            library,
            CUSTOMERS,
            EVENTS,
            dates=["2024-02-01"],
            outcome=outcome,
            build=build,
        )
    with pytest.raises(BacktestError, match="Did you mean 'churned'"):
        backtest(
            "lifecycle_stage",
            library,
            CUSTOMERS,
            EVENTS,
            dates=["2024-02-01"],
            outcome=outcome,
            build=build,
            value="churnd",
        )
    with pytest.raises(BacktestError, match="produced by a model"):
        backtest(
            "churn_risk",
            library,
            CUSTOMERS,
            EVENTS,
            dates=["2024-02-01"],
            outcome=outcome,
            build=build,
        )
