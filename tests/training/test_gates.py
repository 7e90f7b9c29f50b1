from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from training.gates import (
    Gate,
    PromotionConfig,
    evaluate_gates,
    evaluate_gates_against_baselines,
)

CHURN_GATES = PromotionConfig().gates("churn")


def test_default_churn_gates_pass_within_auc_tolerance_and_equal_brier() -> None:
    report = evaluate_gates(
        "churn", {"auc": 0.796, "brier": 0.150}, {"auc": 0.800, "brier": 0.150}, CHURN_GATES
    )
    assert report.passed
    assert [o.metric for o in report.outcomes] == ["auc", "brier"]
    assert report.outcomes[0].delta == pytest.approx(-0.004)


def test_auc_drop_beyond_tolerance_fails() -> None:
    report = evaluate_gates(
        "churn", {"auc": 0.794, "brier": 0.140}, {"auc": 0.800, "brier": 0.150}, CHURN_GATES
    )
    assert not report.passed
    assert [o.metric for o in report.failures] == ["auc"]
    assert "more than 0.005" in report.failures[0].note


def test_brier_worse_at_all_fails_by_default() -> None:
    report = evaluate_gates(
        "churn", {"auc": 0.9, "brier": 0.1501}, {"auc": 0.8, "brier": 0.1500}, CHURN_GATES
    )
    assert [o.metric for o in report.failures] == ["brier"]


def test_value_gini_not_lower() -> None:
    gates = PromotionConfig().gates("value")
    assert evaluate_gates("value", {"normalized_gini": 0.6}, {"normalized_gini": 0.6}, gates).passed
    assert not evaluate_gates(
        "value", {"normalized_gini": 0.59}, {"normalized_gini": 0.6}, gates
    ).passed


def test_relative_tolerance_applies_with_absolute_and_both_must_hold() -> None:
    gate = Gate(metric="brier", tolerance=0.01, relative_tolerance=0.02)
    # 2 % of 0.2 is 0.004: stricter than the absolute 0.01, so it decides.
    assert gate.allowed_worsening(0.2) == pytest.approx(0.004)
    ok = evaluate_gates("churn", {"brier": 0.2035}, {"brier": 0.2}, [gate])
    bad = evaluate_gates("churn", {"brier": 0.2045}, {"brier": 0.2}, [gate])
    assert ok.passed
    assert not bad.passed


def test_missing_metric_fails_the_gate_instead_of_passing() -> None:
    report = evaluate_gates("churn", {"auc": 0.8}, {}, CHURN_GATES)
    assert not report.passed
    assert all("no value" in o.note for o in report.outcomes)
    assert math.isnan(report.outcomes[0].reference)


def test_against_baselines_needs_a_strict_win_on_the_primary_metric() -> None:
    baselines = {
        "recency": {"auc": 0.70, "brier": 0.19},
        "bgnbd": {"auc": 0.75, "brier": 0.21},
    }
    tie = evaluate_gates_against_baselines(
        "churn", {"auc": 0.75, "brier": 0.18}, baselines, CHURN_GATES
    )
    assert not tie.passed
    assert tie.outcomes[0].reference_name == "baseline bgnbd"
    win = evaluate_gates_against_baselines(
        "churn", {"auc": 0.76, "brier": 0.19}, baselines, CHURN_GATES
    )
    assert win.passed
    # Brier is judged against the best baseline on Brier (recency), not on AUC.
    assert win.outcomes[1].reference_name == "baseline recency"


def test_baseline_margin_and_no_baselines() -> None:
    base = {"bgnbd": {"auc": 0.75, "brier": 0.2}}
    assert not evaluate_gates_against_baselines(
        "churn", {"auc": 0.755, "brier": 0.2}, base, CHURN_GATES, margin=0.01
    ).passed
    empty = evaluate_gates_against_baselines("churn", {"auc": 0.9, "brier": 0.1}, {}, CHURN_GATES)
    assert not empty.passed
    assert empty.outcomes[0].reference_name == "no baseline"


def test_config_refuses_unknown_metric_and_negative_tolerance() -> None:
    with pytest.raises(ValidationError, match="gini"):
        PromotionConfig.model_validate({"churn_gates": [{"metric": "gini"}]})
    with pytest.raises(ValidationError):
        PromotionConfig.model_validate({"value_gates": [{"metric": "mae", "tolerance": -1}]})
    with pytest.raises(ValidationError):
        PromotionConfig.model_validate({"churn_gates": [{"metric": "auc", "tolernce": 0.1}]})
