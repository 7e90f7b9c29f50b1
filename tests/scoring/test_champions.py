"""Champion models loaded from a real MLflow SQLite registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scoring.champions import (
    ChampionPredictor,
    MlflowModelSource,
    ModelTag,
    band_labels,
    load_champion_predictors,
)
from scoring.contract import score_frame
from scoring.errors import ModelLoadError
from scoring.loading import load_model, mlflow_uris
from tests.scoring import registry

CHURN = ModelTag(
    "churn_risk", "churn-predictor", (("high", 0.6), ("medium", 0.3), ("low", None)), (0.0, 1.0)
)
VALUE = ModelTag(
    "predicted_value", "value-predictor", (("high", 500.0), ("medium", 100.0), ("low", None))
)
TAGS = {"churn-predictor": CHURN, "value-predictor": VALUE}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry.register(uri, root / "artifacts", "churn-predictor", "churn")
    return uri, root


def test_band_labels_follow_catalogue_bands() -> None:
    scores = np.array([0.0, 0.29, 0.3, 0.59, 0.6, 1.0, np.nan])
    assert band_labels(scores, CHURN.bands) == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "low",
    ]


def test_champion_version_and_missing_ones(mlflow_store: tuple[str, Path]) -> None:
    uri, _ = mlflow_store
    source = MlflowModelSource(uri, TAGS)
    assert source.champion_version("churn-predictor") == "1"
    assert source.champion_version("value-predictor") is None  # never registered
    assert MlflowModelSource(uri, TAGS, alias="nope").champion_version("churn-predictor") is None


def test_loaded_champion_scores_like_the_contract(mlflow_store: tuple[str, Path]) -> None:
    uri, root = mlflow_store
    source = MlflowModelSource(uri, TAGS, cache_dir=root / "cache")
    model = source.load("churn-predictor", "1")
    source.load("churn-predictor", "1")
    # Loads leave no copy of the model behind (they used to, one folder per load).
    assert not any(p.is_file() for p in (root / "cache").rglob("*"))
    frame = registry.feature_frame(40, seed=3)
    with mlflow_uris(uri):
        reference = load_model("models:/churn-predictor/1")
    expected = score_frame(reference.booster, frame, reference.contract)
    got = model.predict(model.prepare(frame))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # the per-request path: a few prepared rows give the same numbers
    rows = model.prepare(frame)[[3, 17, 5]]
    np.testing.assert_allclose(model.predict(rows), expected[[3, 17, 5]], atol=1e-12)
    assert ((got >= 0.05) & (got <= 0.95)).all()  # the isotonic calibration was applied


def test_wrong_target_is_refused(mlflow_store: tuple[str, Path]) -> None:
    uri, root = mlflow_store
    version = registry.register(uri, root / "artifacts", "value-predictor", "churn", alias=None)
    with pytest.raises(ModelLoadError, match="target 'value'"):
        MlflowModelSource(uri, TAGS).load("value-predictor", version)


def test_out_of_range_smoke_prediction_is_refused(mlflow_store: tuple[str, Path]) -> None:
    uri, _ = mlflow_store
    narrow = {
        "churn-predictor": ModelTag("churn_risk", "churn-predictor", CHURN.bands, (0.0, 0.01))
    }
    with pytest.raises(ModelLoadError, match="smoke prediction"):
        MlflowModelSource(uri, narrow).load("churn-predictor", "1")


def test_batch_predictor_rows(mlflow_store: tuple[str, Path]) -> None:
    uri, _ = mlflow_store
    predictors, notices = load_champion_predictors(MlflowModelSource(uri, TAGS))
    assert [p.name for p in predictors] == ["churn-predictor"]
    assert len(notices) == 1
    assert "value-predictor" in notices[0]
    frame = registry.feature_frame(25, seed=4)
    rows = predictors[0].predict_tags(frame, as_of="2026-06-01")
    assert list(rows.columns) == [
        "customer_id",
        "tag_id",
        "value",
        "score",
        "source",
        "version",
        "as_of",
    ]
    assert len(rows) == 25
    assert set(rows["version"]) == {"churn-predictor/1"}
    assert rows["value"].tolist() == band_labels(rows["score"].to_numpy(), CHURN.bands)
    assert isinstance(predictors[0], ChampionPredictor)


def test_typed_pyfunc_registration_takes_level_strings(tmp_path: Path) -> None:
    """``register_booster(typed_pyfunc=True)`` logs through training's ``log_model``.

    So a model registered for the benchmarks is what training registers: the native
    flavor loads it with its contract, and the pyfunc flavor takes categoricals as
    their level strings and predicts what the booster predicts on their codes.
    """
    import mlflow.pyfunc

    from scoring.contract import model_matrix

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    booster = registry.train_booster("churn")
    version = registry.register_booster(
        uri,
        tmp_path / "artifacts",
        "churn-predictor",
        booster,
        registry.contract("churn"),
        typed_pyfunc=True,
    )
    frame = registry.feature_frame(20, seed=5)
    with mlflow_uris(uri):
        native = load_model(f"models:/churn-predictor/{version}")
        pyfunc = mlflow.pyfunc.load_model(f"models:/churn-predictor/{version}")
        info = mlflow.models.get_model_info(f"models:/churn-predictor/{version}")
    assert native.contract.feature_names == registry.FEATURES
    types = {c.name: c.type.name for c in info.signature.inputs.inputs}
    assert types == {"recency_days": "double", "frequency_orders": "double", "region": "string"}
    typed = frame[registry.FEATURES].astype({"region": object})
    expected = booster.predict(model_matrix(frame, registry.contract("churn")), num_threads=1)
    np.testing.assert_allclose(pyfunc.predict(typed), expected, rtol=0, atol=1e-12)
