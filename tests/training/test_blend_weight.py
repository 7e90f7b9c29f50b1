"""The blend's weight choice: best on validation, or the one-standard-error rule that
prefers the label-free Pareto/NBD on a customer-grouped plan."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.btyd import blend_scores
from training.blend import BLEND_WEIGHTS, _choose_weight, selection_se
from training.evaluation import metrics_for


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spend ``y``, a booster close to it and a BTYD a little further off."""
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 50.0, n)
    y = rng.poisson(truth / 20.0) * 20.0
    raw = truth * np.exp(rng.normal(0.0, 0.5, n))
    btyd = truth * np.exp(rng.normal(0.0, 0.6, n))
    return y, raw, btyd


def _gini(y: np.ndarray, raw: np.ndarray, btyd: np.ndarray, w: float) -> float:
    return metrics_for("value", y, blend_scores("value", w, 0.0, raw, btyd))["normalized_gini"]


def test_without_the_rule_the_best_validation_weight_wins() -> None:
    y, raw, btyd = _rows(3_000)
    weight, se = _choose_weight("value", y, raw, btyd, one_se=False, seed=0)
    assert se == 0.0
    assert _gini(y, raw, btyd, weight) == max(_gini(y, raw, btyd, w) for w in BLEND_WEIGHTS)


def test_one_se_takes_the_lowest_weight_within_one_standard_error() -> None:
    y, raw, btyd = _rows(600)
    best, _ = _choose_weight("value", y, raw, btyd, one_se=False, seed=0)
    weight, se = _choose_weight("value", y, raw, btyd, one_se=True, seed=0)
    values = {w: _gini(y, raw, btyd, w) for w in BLEND_WEIGHTS}
    assert se > 0
    assert weight <= best
    assert values[weight] >= values[best] - se
    assert all(values[w] < values[best] - se for w in BLEND_WEIGHTS if w < weight)


def test_one_se_keeps_a_clearly_better_booster() -> None:
    # The BTYD is noise: the best weight is far above the others, beyond one SE.
    y, raw, _ = _rows(20_000)
    noise = np.random.default_rng(1).gamma(2.0, 50.0, len(y))
    weight, se = _choose_weight("value", y, raw, noise, one_se=True, seed=0)
    assert weight == BLEND_WEIGHTS[-1]
    assert 0 < se < 0.01


def test_selection_se_shrinks_with_rows() -> None:
    y, raw, _ = _rows(20_000)
    small = selection_se("value", y[:500], raw[:500], seed=0)
    large = selection_se("value", y, raw, seed=0)
    assert large < small
    # Roughly 1 / sqrt(n): 40 times the rows, about a sixth of the error.
    assert large / small == pytest.approx(np.sqrt(500 / 20_000), rel=0.5)
    churn_y = (y == 0).astype(np.float64)
    assert selection_se("churn", churn_y, -raw, seed=0) > 0
    assert selection_se("churn", np.zeros(100), raw[:100], seed=0) == 0.0
