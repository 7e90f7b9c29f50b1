"""The model contract: matrix encoding, calibration, MLflow metadata round trip."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.errors import SchemaError
from scoring.contract import (
    IsotonicCalibration,
    ModelContract,
    PlattCalibration,
    calibrate,
    categorical_levels_of,
    contract_from_metadata,
    contract_metadata,
    model_matrix,
    score_frame,
)
from scoring.loading import load_model


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.array(["a", "b", "c", "d"], dtype="string"),
            "recency_days": [1.0, None, 30.0, 400.0],
            "never_purchased": [False, True, False, False],
            "frequency_orders": pd.array([3, 0, 1, None], dtype="Int64"),
            "region": pd.array(["north", "south", None, "mars"], dtype="string"),
        }
    )


def _contract(**kw: object) -> ModelContract:
    base: dict[str, object] = {
        "target": "churn",
        "horizon_days": 90,
        "feature_names": ["recency_days", "never_purchased", "frequency_orders", "region"],
        "categorical_levels": {"region": ["north", "south"]},
    }
    base.update(kw)
    return ModelContract.model_validate(base)


def test_model_matrix_encodes_by_hand() -> None:
    x = model_matrix(_frame(), _contract())
    expected = np.array(
        [
            [1.0, 0.0, 3.0, 0.0],
            [np.nan, 1.0, 0.0, 1.0],
            [30.0, 0.0, 1.0, np.nan],  # missing level -> NaN
            [400.0, 0.0, np.nan, np.nan],  # unseen level 'mars' -> NaN
        ]
    )
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, expected)


def test_model_matrix_follows_contract_order_not_frame_order() -> None:
    contract = _contract(feature_names=["region", "recency_days"])
    x = model_matrix(_frame()[["recency_days", "region", "customer_id"]], contract)
    np.testing.assert_array_equal(x[:2], [[0.0, 1.0], [1.0, np.nan]])


def test_model_matrix_names_missing_feature() -> None:
    with pytest.raises(SchemaError, match="frequency_orders"):
        model_matrix(_frame().drop(columns=["frequency_orders"]), _contract())


def test_model_matrix_refuses_undeclared_text_column() -> None:
    with pytest.raises(SchemaError, match="region"):
        model_matrix(_frame(), _contract(categorical_levels={}))


def test_categorical_levels_of_lists_string_columns_only() -> None:
    names = ["recency_days", "never_purchased", "region"]
    assert categorical_levels_of(_frame(), names) == {"region": ["mars", "north", "south"]}


def test_isotonic_calibration_interpolates_and_clips() -> None:
    contract = _contract(calibration=IsotonicCalibration(x=[0.2, 0.6], y=[0.1, 0.5]))
    got = calibrate(np.array([0.0, 0.2, 0.4, 0.6, 1.0]), contract)
    np.testing.assert_allclose(got, [0.1, 0.1, 0.3, 0.5, 0.5])


def test_platt_calibration_matches_formula() -> None:
    contract = _contract(calibration=PlattCalibration(a=-2.0, b=0.5))
    raw = np.array([0.1, 0.5, 0.9])
    logit = np.log(raw / (1 - raw))
    np.testing.assert_allclose(calibrate(raw, contract), 1 / (1 + np.exp(-2.0 * logit + 0.5)))


def test_no_calibration_is_identity() -> None:
    raw = np.array([0.3, 12.5])
    np.testing.assert_array_equal(calibrate(raw, _contract(calibration=None)), raw)


def test_contract_rejects_inconsistent_input() -> None:
    with pytest.raises(ValidationError, match="not among the feature names"):
        _contract(categorical_levels={"city": ["x"]})
    with pytest.raises(ValidationError, match="non-decreasing"):
        IsotonicCalibration(x=[0.5, 0.1], y=[0.1, 0.2])
    with pytest.raises(ValidationError, match="extra"):
        ModelContract.model_validate({**_contract().model_dump(), "surprise": 1})


def test_metadata_round_trip_and_missing_contract() -> None:
    contract = _contract(
        calibration=IsotonicCalibration(x=[0.0, 1.0], y=[0.0, 1.0]),
        train_cutoffs=[date(2024, 1, 1)],
        spec_hash="abc",
    )
    assert contract_from_metadata(contract_metadata(contract)) == contract
    with pytest.raises(SchemaError, match="tagsmith_contract"):
        contract_from_metadata({"other": 1}, source="models:/x/1")


def _fitted_booster(contract: ModelContract) -> lgb.Booster:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "recency_days": rng.exponential(60, n),
            "never_purchased": rng.random(n) < 0.1,
            "frequency_orders": rng.poisson(3, n),
            "region": pd.array(rng.choice(["north", "south"], n), dtype="string"),
        }
    )
    y = (frame["recency_days"] + 40 * (frame["region"] == "south").astype(int) > 70).astype(int)
    x = model_matrix(frame, contract)
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "min_data_in_leaf": 5}
    data = lgb.Dataset(x, y.to_numpy(), categorical_feature=contract.categorical_indices)
    return lgb.train(params, data, num_boost_round=10)


def test_logged_model_scores_identically_after_registry_round_trip(tmp_path: Path) -> None:
    import mlflow
    import mlflow.lightgbm

    contract = _contract(calibration=IsotonicCalibration(x=[0.0, 0.5, 1.0], y=[0.0, 0.4, 1.0]))
    booster = _fitted_booster(contract)
    expected = score_frame(booster, _frame(), contract)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            metadata=contract_metadata(contract),
            pip_requirements=["lightgbm"],
            registered_model_name="churn-predictor",
        )
    assert info.registered_model_version == 1
    mlflow.MlflowClient().set_registered_model_alias("churn-predictor", "challenger", "1")
    loaded = load_model("models:/churn-predictor@challenger")
    assert loaded.contract == contract
    np.testing.assert_array_equal(loaded.score(_frame()), expected)
    # The south/unknown rows really differ, so the comparison above is not vacuous.
    assert len(np.unique(expected)) > 1
