"""Promotion on a real training run: re-scoring reproduces training's test metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainingConfig
from training.gates import PromotionConfig
from training.pipeline import train_predictor
from training.promotion import promote
from training.registry import ModelRegistry
from training.rescoring import latest_rescoring
from training.tracking import log_training

from .conftest import simulate_facts, tiny_build_features

CONFIG = TrainingConfig(num_boost_round=30, learning_rate=0.2)


def test_window_and_baselines_reproduce_the_training_test_slice(tmp_path: Path) -> None:
    customers, events = simulate_facts(600, seed=3)
    result = train_predictor(
        customers,
        events,
        target="churn",
        config=CONFIG,
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_training(result, tracking_uri=uri, artifacts_dir=tmp_path / "artifacts")
    registry = ModelRegistry(uri, tmp_path / "history.sqlite", tmp_path / "locks")

    rescoring = latest_rescoring(
        customers, events, target="churn", config=CONFIG, feature_builder=tiny_build_features
    )
    window = rescoring.window
    assert window.cutoff == result.plan.test
    assert list(window.features["customer_id"]) == list(result.test["customer_id"])
    baselines = rescoring.baseline_scores()
    assert set(baselines) == set(result.baselines)

    outcome = promote(
        registry,
        "churn-predictor",
        window,
        PromotionConfig(),
        actor="ana",
        baselines=rescoring.baseline_scores,
    )
    # Oracle: the numbers training logged for its test slice, computed independently.
    model_scores = outcome.scores["v1"]
    for metric in ("auc", "brier"):
        assert model_scores[metric] == pytest.approx(result.metrics["model"][metric], abs=1e-12)
        for name in result.baselines:
            assert outcome.scores[f"baseline {name}"][metric] == pytest.approx(
                result.metrics[name][metric], abs=1e-12
            )
    best_auc = max(result.metrics[n]["auc"] for n in result.baselines)
    best_brier = min(result.metrics[n]["brier"] for n in result.baselines)
    expected = result.metrics["model"]["auc"] > best_auc and (
        result.metrics["model"]["brier"] <= best_brier
    )
    assert outcome.promoted == expected
    assert registry.alias_version("churn-predictor", "champion") == ("1" if expected else None)


def test_horizon_override_follows_the_candidate() -> None:
    customers, events = simulate_facts(300, seed=5)
    rescoring = latest_rescoring(
        customers,
        events,
        target="value",
        config=CONFIG,
        feature_builder=tiny_build_features,
        horizon_days=30,
    )
    assert rescoring.window.horizon_days == 30
    assert rescoring.window.task == "value"
