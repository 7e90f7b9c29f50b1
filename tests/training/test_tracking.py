from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.loading import load_model
from training.config import TrainingConfig
from training.pipeline import train_predictor
from training.tracking import log_training, model_card

from .conftest import simulate_facts, tiny_build_features


def test_run_is_logged_registered_and_scores_identically(tmp_path: Path) -> None:
    import mlflow

    customers, events = simulate_facts(600, seed=3)
    result = train_predictor(
        customers,
        events,
        target="churn",
        config=TrainingConfig(num_boost_round=30, learning_rate=0.2),
        feature_builder=tiny_build_features,
        spec_hash="spec123",
        facts_fingerprint="facts456",
        n_jobs=1,
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reg = log_training(
        result, tracking_uri=uri, artifacts_dir=tmp_path / "artifacts", config={"horizon_days": 90}
    )
    assert (reg.model_name, reg.version) == ("churn-predictor", "1")

    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("churn-predictor", "challenger").version) == "1"
    run = client.get_run(reg.run_id)
    assert run.data.tags["spec_hash"] == "spec123"
    assert run.data.tags["facts_fingerprint"] == "facts456"
    assert run.data.params["horizon_days"] == "90"
    assert run.data.params["test_cutoff"] == result.plan.test.date().isoformat()
    assert run.data.metrics["auc"] == pytest.approx(result.metrics["model"]["auc"])
    assert "baseline_bgnbd_auc" in run.data.metrics
    assert "lift_auc" in run.data.metrics
    art = tmp_path / "artifacts" / "tagsmith-churn" / reg.run_id / "artifacts"
    for name in (
        "plots/calibration.png",
        "plots/gain_lift.png",
        "plots/feature_importance.png",
        "plots/predicted_vs_actual.png",
        "model_card.md",
        "tables/metrics.csv",
        "tables/segment_metrics.csv",
    ):
        assert (art / name).stat().st_size > 0, name

    loaded = load_model("models:/churn-predictor@challenger")
    assert loaded.contract == result.contract
    assert "[num_threads: 1]" in loaded.booster.model_to_string()
    feats = tiny_build_features(customers, events, as_of=result.plan.test)
    test = result.test[["customer_id"]].merge(feats, on="customer_id")
    np.testing.assert_allclose(loaded.score(test), result.scores["model"], rtol=0, atol=1e-12)

    # A second run becomes version 2 and takes the challenger alias.
    reg2 = log_training(result, tracking_uri=uri, artifacts_dir=tmp_path / "artifacts")
    assert reg2.version == "2"
    assert str(client.get_model_version_by_alias("churn-predictor", "challenger").version) == "2"


def test_model_card_names_cutoffs_and_baselines() -> None:
    customers, events = simulate_facts(500, seed=4)
    result = train_predictor(
        customers,
        events,
        target="value",
        config=TrainingConfig(num_boost_round=20, learning_rate=0.2),
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    card = model_card(result)
    assert "value-predictor" in card
    assert result.plan.test.date().isoformat() in card
    for name in ("recency", "rfm", "linear", "bgnbd"):
        assert f"| {name} |" in card
    assert isinstance(result.metrics_table(), pd.DataFrame)
