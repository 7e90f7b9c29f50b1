from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.contract import model_matrix
from scoring.loading import load_model, mlflow_uris, saved_mlflow_uris
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

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
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

    with mlflow_uris(uri):  # log_training left the process-wide URIs as they were
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


def test_training_into_two_projects_does_not_cross(tmp_path: Path) -> None:
    """log_training points MLflow at its registry for the call only, then restores it.

    The process-wide URIs (and their variables) come back exactly as they were: unset
    stays unset, a caller's own setting stays.
    """
    import mlflow

    customers, events = simulate_facts(400, seed=5)
    result = train_predictor(
        customers,
        events,
        target="churn",
        config=TrainingConfig(num_boost_round=10, learning_rate=0.3),
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    before = saved_mlflow_uris()
    assert before == (None, None, None, None)  # the root conftest starts every test unset
    first, second = (f"sqlite:///{tmp_path / name / 'mlflow.db'}" for name in ("a", "b"))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    log_training(result, tracking_uri=first, artifacts_dir=tmp_path / "a" / "artifacts")
    assert saved_mlflow_uris() == before
    # A caller's own setting survives a training run into another registry.
    mlflow.set_tracking_uri(first)
    mlflow.set_registry_uri(first)
    pointed = saved_mlflow_uris()
    reg = log_training(result, tracking_uri=second, artifacts_dir=tmp_path / "b" / "artifacts")
    assert saved_mlflow_uris() == pointed
    for uri, versions in ((first, ["1"]), (second, ["1"])):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = client.search_model_versions("name='churn-predictor'")
        assert sorted(str(v.version) for v in found) == versions, uri
    assert reg.version == "1"
    assert not (tmp_path / "a" / "artifacts" / "tagsmith-churn" / reg.run_id).exists()
    assert (tmp_path / "b" / "artifacts" / "tagsmith-churn" / reg.run_id).is_dir()


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


def test_signature_types_categoricals_as_strings_and_pyfunc_takes_them(tmp_path: Path) -> None:
    """Issue 21: the logged signature said ``double`` for categoricals (their codes)."""
    import mlflow
    import mlflow.pyfunc

    customers, events = simulate_facts(600, seed=3)
    result = train_predictor(
        customers,
        events,
        target="churn",
        config=TrainingConfig(num_boost_round=20, learning_rate=0.2),
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    assert "region" in result.contract.categorical_levels
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_training(result, tracking_uri=uri, artifacts_dir=tmp_path / "artifacts")
    # The integer columns of the logged test rows (the labels) are never missing: MLflow's
    # hint about integers at inference time is noise in a user's `models train` output.
    hints = [str(w.message) for w in caught if "Inferred schema contains integer" in str(w.message)]
    assert hints == []
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    info = mlflow.models.get_model_info("models:/churn-predictor/1")
    types = {c.name: c.type.name for c in info.signature.inputs.inputs}
    assert list(types) == result.contract.feature_names
    for name in result.contract.feature_names:
        expected = "string" if name in result.contract.categorical_levels else "double"
        assert types[name] == expected, (name, types[name])
    assert info.flavors["python_function"]["loader_module"] == "tagsmith_pyfunc"

    # The pyfunc flavor takes the features as the signature types them (region as text,
    # an unseen region too) and predicts exactly what the booster does on Tagsmith's own
    # coding of them (its output, like the signature's, is before calibration).
    feats = tiny_build_features(customers, events, as_of=result.plan.test)
    test = result.test[["customer_id"]].merge(feats, on="customer_id")
    typed = test[result.contract.feature_names].copy()
    for name in result.contract.feature_names:
        categorical = name in result.contract.categorical_levels
        typed[name] = typed[name].astype(object if categorical else "float64")
    typed.loc[typed.index[0], "region"] = "atlantis"
    pyfunc = mlflow.pyfunc.load_model("models:/churn-predictor/1")
    native = load_model("models:/churn-predictor/1")
    coded = model_matrix(test.assign(region=typed["region"].astype("string")), native.contract)
    assert np.isnan(coded[0, result.contract.feature_names.index("region")])  # atlantis
    expected = native.booster.predict(coded, num_threads=1)
    np.testing.assert_allclose(pyfunc.predict(typed), expected, rtol=0, atol=1e-12)
