from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from training.evaluation import (
    calibration_table,
    churn_metrics,
    gain_table,
    lift_over,
    normalized_gini,
    segment_metrics,
    simple_segments,
    value_metrics,
)


def test_churn_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0] + [0] * 16)
    p = np.array([0.9, 0.8, 0.7, 0.1] + [0.05] * 16)
    got = churn_metrics(y, p)
    assert got["auc"] == pytest.approx(roc_auc_score(y, p))
    assert got["brier"] == pytest.approx(np.mean((p - y) ** 2))
    # Top decile = the 2 highest scores: one churner of two, base rate 2/20.
    assert got["top_decile_lift"] == pytest.approx(0.5 / 0.1)
    assert np.isnan(churn_metrics(np.zeros(5), np.full(5, 0.2))["auc"])


def test_normalized_gini_orders() -> None:
    y = np.array([0.0, 0.0, 5.0, 10.0, 100.0])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, np.arange(5.0)) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < 0
    # Ties resolve against the model: a constant prediction scores like the worst order.
    assert normalized_gini(y, np.ones(5)) == pytest.approx(normalized_gini(y, -y))


def test_value_metrics_by_hand() -> None:
    y = np.array([0.0] * 8 + [10.0, 90.0])
    pred = np.array([1.0] * 8 + [5.0, 50.0])
    got = value_metrics(y, pred)
    assert got["mae"] == pytest.approx((8 * 1 + 5 + 40) / 10)
    assert got["top_decile_capture"] == pytest.approx(0.9)
    assert got["total_ratio"] == pytest.approx(63 / 100)
    assert got["normalized_gini"] == pytest.approx(1.0)


def test_lift_over_respects_direction() -> None:
    model = {"auc": 0.80, "brier": 0.10, "total_ratio": 0.98}
    baselines = {
        "a": {"auc": 0.75, "brier": 0.12, "total_ratio": 1.10},
        "b": {"auc": 0.78, "brier": 0.15, "total_ratio": 0.95},
    }
    got = lift_over(model, baselines)
    assert got["auc"] == ("b", pytest.approx(0.02))
    assert got["brier"] == ("a", pytest.approx(0.02))
    assert got["total_ratio"] == ("b", pytest.approx(0.05 - 0.02))


def test_calibration_and_gain_tables() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(float)
    cal = calibration_table(y, p)
    assert len(cal) == 10
    np.testing.assert_allclose(cal["predicted"], cal["observed"], atol=0.05)
    gain = gain_table(y, p)
    assert gain["gain"].iloc[-1] == pytest.approx(1.0)
    assert gain["gain"].is_monotonic_increasing


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cutoff": pd.Timestamp("2024-01-01", tz="UTC"),
            "days_since_last_purchase": [5.0, 200.0, 10.0, 300.0],
            "n_purchase_days": [10, 1, 1, 6],
            "purchase_amount": [500.0, 5.0, 600.0, 10.0],
            "refund_amount": [0.0, 0.0, 0.0, 0.0],
            "days_since_first_purchase": [400.0, 200.0, 10.0, 500.0],
        }
    )


def test_simple_segments() -> None:
    seg = simple_segments(_summary())
    assert list(seg["rfm_segment"]) == [
        "important_value",
        "general_win_back",
        "important_development",
        "general_retention",
    ]
    # Gap of customer 0 is (400 - 5) / 9 ~ 44 days: 5 days since the last purchase is active.
    assert list(seg["lifecycle_stage"]) == ["active", "lapsed", "new", "lapsed"]


def test_segment_metrics_long_table() -> None:
    n = 200
    rng = np.random.default_rng(1)
    y = (rng.random(n) < 0.4).astype(float)
    segs = pd.DataFrame({"stage": np.where(np.arange(n) < 150, "a", "b")})
    out = segment_metrics("churn", y, {"model": y * 0.8 + 0.1, "flat": np.full(n, 0.4)}, segs)
    assert set(out["segment"]) == {"a", "b"}
    auc = out.query("metric == 'auc' and scorer == 'model'")
    assert (auc["value"] == 1.0).all()
    assert out.query("segment == 'a'")["n"].iloc[0] == 150


def test_tag_segments_use_the_catalogue_rules() -> None:
    from features.build import build_features
    from synthetic import generate
    from tags.catalogue import LIBRARY_DIR, Catalogue
    from tags.engine import evaluate_tags
    from training.evaluation import tag_segments

    data = generate(300, start="2023-01-01", end="2024-06-30", seed=2)
    cutoff = pd.Timestamp("2024-03-01", tz="UTC")
    feats = build_features(data.customers, data.events, as_of=cutoff)
    frame = feats.assign(
        cutoff=cutoff,
        days_since_last_purchase=feats["recency_days"],
        n_purchase_days=feats["frequency_days"],
        purchase_amount=feats["monetary_total"],
        refund_amount=0.0,
        days_since_first_purchase=feats["tenure_days"],
    )
    frame = frame.loc[~frame["never_purchased"]].reset_index(drop=True)
    catalogue = Catalogue.load(LIBRARY_DIR)
    seg = tag_segments(frame, data.events, catalogue)
    long = evaluate_tags(
        feats, data.events, catalogue, as_of=cutoff, tag_ids=["rfm_segment", "lifecycle_stage"]
    )
    expected = long.loc[long["tag_id"] == "lifecycle_stage"].set_index("customer_id")["value"]
    got = pd.Series(seg["lifecycle_stage"].to_numpy(), index=frame["customer_id"].astype(str))
    assert got.to_dict() == expected.reindex(got.index).fillna("none").to_dict()
    assert seg["rfm_segment"].nunique() > 1


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.9, 1.0])),
        min_size=2,
        max_size=80,
    ),
    jitter=st.booleans(),
)
def test_auc_and_pr_auc_match_sklearn(data: list[tuple[bool, float]], jitter: bool) -> None:
    # Few distinct scores (many ties) or jittered ones (none).
    y = np.array([float(b) for b, _ in data])
    p = np.array([s for _, s in data])
    if jitter:
        p = p + np.random.default_rng(len(data)).uniform(0, 1e-3, len(p))
    got = churn_metrics(y, p)
    if 0 < y.sum() < len(y):
        assert got["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    else:
        assert np.isnan(got["auc"])
        assert np.isnan(got["pr_auc"])
