"""The standard tag library against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.engine import evaluate_tags
from tests.tags.conftest import EVENT_TYPES, make_events, make_features

AS_OF = "2024-03-01"
NEVER = {
    "never_purchased": True,
    "frequency_orders": 0.0,
    "monetary_total": 0.0,
    "loyalty_score": 0.0,
    "recency_days": np.nan,
    "gap_mean_days": np.nan,
}


def tag_values(frame: pd.DataFrame, tag_id: str, events: pd.DataFrame | None = None) -> dict:
    catalogue = Catalogue.load(LIBRARY_DIR, event_types=EVENT_TYPES)
    long = evaluate_tags(
        frame,
        events if events is not None else make_events([]),
        catalogue,
        as_of=AS_OF,
        tag_ids=[tag_id],
    )
    return dict(zip(long["customer_id"], long["value"], strict=True))


def test_library_loads_active_and_documented(library: Catalogue) -> None:
    ids = {t.id for t in library}
    assert {
        "rfm_segment",
        "lifecycle_stage",
        "old_customer",
        "loyalty_tier",
        "value_tier",
        "complaint_risk",
        "refund_risk",
        "preferred_category",
        "browse_churn",
        "churn_risk",
        "predicted_value",
        "age_band",
    } <= ids
    for tag in library:
        assert tag.status == "active"
        assert len(tag.description) > 20
    assert library.get("churn_risk").source == "model"
    assert library.get("churn_risk").score_range == (0.0, 1.0)
    assert library.get("churn_risk").band_of([0.7, 0.3, 0.29, float("nan")]) == [
        "high",
        "medium",
        "low",
        None,
    ]
    assert library.get("predicted_value").band_of([500, 99.9]) == ["high", "low"]
    names = {v.id: v.name for v in library.get("rfm_segment").values}
    assert names["important_value"].startswith("重要价值客户")
    assert names["general_win_back"].startswith("一般挽留客户")


def test_rfm_eight_segments_by_median_over_buyers() -> None:
    # Buyers: recency median 27 (R high: c0-c3), frequency median 3 (F high: 5s),
    # monetary median 255 (M high: 500s). c8 never bought: no segment.
    recency = [1, 2, 3, 4, 50, 60, 70, 80]
    frequency = [5, 1, 5, 1, 5, 1, 5, 1]
    monetary = [500, 500, 10, 10, 500, 500, 10, 10]
    rows = [
        {"recency_days": r, "frequency_orders": f, "monetary_total": m}
        for r, f, m in zip(recency, frequency, monetary, strict=True)
    ]
    frame = make_features([*rows, NEVER])
    assert tag_values(frame, "rfm_segment") == {
        "c0": "important_value",
        "c1": "important_development",
        "c2": "general_value",
        "c3": "general_development",
        "c4": "important_retention",
        "c5": "important_win_back",
        "c6": "general_retention",
        "c7": "general_win_back",
    }


def test_rfm_thresholds_move_with_the_population() -> None:
    # The same customer is R-high among old buyers and R-low among recent ones.
    probe = {"customer_id": "p", "recency_days": 20, "frequency_orders": 9, "monetary_total": 900}
    stale = make_features([probe] + [{"recency_days": 100 + i} for i in range(5)])
    fresh = make_features([probe] + [{"recency_days": 1 + i} for i in range(5)])
    assert tag_values(stale, "rfm_segment")["p"] == "important_value"
    assert tag_values(fresh, "rfm_segment")["p"] == "important_retention"


def test_lifecycle_relative_to_own_rhythm() -> None:
    frame = make_features(
        [
            {"customer_id": "potential", **NEVER},
            {
                "customer_id": "new",
                "frequency_orders": 1,
                "recency_days": 30,
                "gap_mean_days": np.nan,
            },
            {
                "customer_id": "active",
                "frequency_orders": 4,
                "gap_mean_days": 20,
                "recency_days": 25,
            },
            {
                "customer_id": "slow_active",
                "frequency_orders": 10,
                "gap_mean_days": 60,
                "recency_days": 80,
            },
            {
                "customer_id": "fast_active",
                "frequency_orders": 20,
                "gap_mean_days": 2,
                "recency_days": 25,
            },
            {
                "customer_id": "dormant",
                "frequency_orders": 4,
                "gap_mean_days": 20,
                "recency_days": 80,
            },
            {
                "customer_id": "single_dormant",
                "frequency_orders": 1,
                "recency_days": 70,
                "gap_mean_days": np.nan,
            },
            {
                "customer_id": "churned",
                "frequency_orders": 4,
                "gap_mean_days": 20,
                "recency_days": 120,
            },
            {
                "customer_id": "slow_churned",
                "frequency_orders": 3,
                "gap_mean_days": 100,
                "recency_days": 400,
            },
        ]
    )
    assert tag_values(frame, "lifecycle_stage") == {
        "potential": "potential",
        "new": "new",
        "active": "active",
        "slow_active": "active",
        "fast_active": "active",
        "dormant": "dormant",
        "single_dormant": "dormant",
        "churned": "churned",
        "slow_churned": "churned",
    }
    order = [v.id for v in Catalogue.load(LIBRARY_DIR).get("lifecycle_stage").values]
    assert order == ["potential", "new", "active", "dormant", "churned"]


def test_old_customer_is_three_or_more_purchases() -> None:
    frame = make_features([{"frequency_orders": f} for f in (2, 3, 7)] + [NEVER])
    assert tag_values(frame, "old_customer") == {"c1": "true", "c2": "true"}


def test_loyalty_tier_bands() -> None:
    frame = make_features([{"loyalty_score": s} for s in (0.6, 0.59, 0.3, 0.1)] + [NEVER])
    assert tag_values(frame, "loyalty_tier") == {
        "c0": "high",
        "c1": "medium",
        "c2": "medium",
        "c3": "low",
    }


def test_value_tier_by_quantiles_of_buyers() -> None:
    # Spends 10..100: 80th percentile 82 (linear), median 55.
    frame = make_features([{"monetary_total": 10.0 * (i + 1)} for i in range(10)] + [NEVER])
    values = tag_values(frame, "value_tier")
    assert values == {
        **{f"c{i}": "low" for i in range(5)},
        **{f"c{i}": "medium" for i in range(5, 8)},
        "c8": "high",
        "c9": "high",
    }


def test_risk_tags() -> None:
    frame = make_features(
        [
            {"refund_rate": 0.3, "frequency_orders": 3},
            {"refund_rate": 0.5, "frequency_orders": 2},
            {"refund_rate": 0.1, "frequency_orders": 9},
        ]
    )
    events = make_events(
        [
            {"customer_id": "c0", "occurred_at": "2024-02-01", "event_type": "complaint"},
            {"customer_id": "c0", "occurred_at": "2024-01-01", "event_type": "complaint"},
            {"customer_id": "c1", "occurred_at": "2024-02-01", "event_type": "complaint"},
            {"customer_id": "c1", "occurred_at": "2023-11-01", "event_type": "complaint"},
            {"customer_id": "c2", "occurred_at": "2024-03-02", "event_type": "complaint"},
            {"customer_id": "c2", "occurred_at": "2024-02-20", "event_type": "complaint"},
        ]
    )
    assert tag_values(frame, "refund_risk") == {"c0": "true"}
    # c1's second complaint is 121 days old; c2's is after as_of.
    assert tag_values(frame, "complaint_risk", events) == {"c0": "true"}


def test_classic_browse_churn_rule_relative_windows() -> None:
    # as_of 2024-03-01: "from 54 to 30 days ago" is [2024-01-07, 2024-01-31).
    def browses(customer: str, day: str, n: int) -> list[dict]:
        return [{"customer_id": customer, "occurred_at": day, "event_type": "browse"}] * n

    events = make_events(
        browses("c0", "2024-01-20", 5)
        + browses("c1", "2024-01-20", 5)
        + browses("c1", "2024-02-20", 1)
        + browses("c2", "2024-01-20", 4)
        + browses("c3", "2024-01-01", 5)
        + browses("c4", "2024-01-07", 5)
        + browses("c5", "2024-01-31", 5)
    )
    frame = make_features([{} for _ in range(6)])
    assert tag_values(frame, "browse_churn", events) == {"c0": "true", "c4": "true"}


def test_preferred_category_and_age_band_come_from_the_data() -> None:
    frame = make_features(
        [
            {"top_category": "books", "top_category_share": 0.5, "frequency_orders": 2},
            {"top_category": "shoes", "top_category_share": 0.9, "frequency_orders": 1},
            {"top_category": "toys", "top_category_share": 0.3, "frequency_orders": 5},
            {
                "top_category": "美妆",
                "top_category_share": 0.4,
                "frequency_orders": 5,
                "age_band": None,
            },
        ]
    )
    assert tag_values(frame, "preferred_category") == {"c0": "books", "c3": "美妆"}
    assert tag_values(frame, "age_band") == {"c0": "26-35", "c1": "26-35", "c2": "26-35"}


@pytest.mark.parametrize("tag_id", ["rfm_segment", "lifecycle_stage", "value_tier"])
def test_multi_valued_library_tags_give_one_value_per_customer_in_scope(tag_id: str) -> None:
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(300):
        never = rng.random() < 0.2
        rows.append(
            NEVER
            if never
            else {
                "recency_days": float(rng.integers(0, 400)),
                "frequency_orders": float(rng.integers(1, 12)),
                "monetary_total": float(rng.gamma(2, 100)),
                "gap_mean_days": float(rng.gamma(2, 20)) if rng.random() < 0.8 else np.nan,
            }
        )
    frame = make_features(rows)
    values = tag_values(frame, tag_id)
    buyers = {f"c{i}" for i, r in enumerate(rows) if r is not NEVER}
    expected = buyers if tag_id != "lifecycle_stage" else {f"c{i}" for i in range(300)}
    assert set(values) == expected
