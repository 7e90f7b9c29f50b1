"""A real MLflow SQLite registry with tiny LightGBM models, for serving tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.contract import IsotonicCalibration, ModelContract, contract_metadata

FEATURES = ["recency_days", "frequency_orders", "region"]
LEVELS = {"region": ["east", "north", "south"]}


def feature_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i:04d}" for i in range(n)], dtype="string"),
            "recency_days": rng.integers(0, 400, n).astype("float64"),
            "frequency_orders": rng.integers(0, 20, n).astype("float64"),
            "region": pd.array(rng.choice(["east", "north", "south"], n), dtype="string"),
        }
    )


def contract(target: str) -> ModelContract:
    return ModelContract(
        target=target,  # type: ignore[arg-type]
        horizon_days=90,
        feature_names=FEATURES,
        categorical_levels=LEVELS,
        calibration=(
            IsotonicCalibration(x=[0.0, 0.5, 1.0], y=[0.05, 0.4, 0.95])
            if target == "churn"
            else None
        ),
    )


def train_booster(target: str, seed: int = 0) -> lgb.Booster:
    from scoring.contract import model_matrix

    frame = feature_frame(seed=seed)
    x = model_matrix(frame, contract(target))
    if target == "churn":
        y = (frame["recency_days"] > 150).astype(float).to_numpy()
        params: dict[str, Any] = {"objective": "binary"}
    else:
        y = frame["frequency_orders"].to_numpy() * 40.0
        params = {"objective": "regression"}
    params |= {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=8)


def register(
    tracking_uri: str,
    artifacts: Path,
    name: str,
    target: str,
    *,
    alias: str | None = "champion",
    seed: int = 0,
) -> str:
    """Log + register a tiny model on :func:`feature_frame`; return its version."""
    return register_booster(
        tracking_uri,
        artifacts,
        name,
        train_booster(target, seed=seed),
        contract(target),
        alias=alias,
    )


def register_booster(
    tracking_uri: str,
    artifacts: Path,
    name: str,
    booster: lgb.Booster,
    model_contract: ModelContract,
    *,
    alias: str | None = "champion",
    typed_pyfunc: bool = False,
) -> str:
    """Log + register ``booster`` with its contract, point ``alias`` at it; its version.

    With ``typed_pyfunc`` the model is logged as training logs champions
    (``training.mlflow_model``: a signature taking categoricals as their level strings,
    served by ``mlflow models serve``); otherwise the plain LightGBM flavor with an
    all-numeric signature, which is what the registry tests need.
    """
    import mlflow
    import mlflow.lightgbm
    from mlflow import MlflowClient

    from scoring.loading import mlflow_uris

    exp_name = f"test-{name}"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(exp_name)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(exp_name, artifact_location=(artifacts / name).as_uri())
    )
    from mlflow.models import infer_signature

    example = pd.DataFrame(
        np.zeros((2, len(model_contract.feature_names))), columns=model_contract.feature_names
    )
    signature = infer_signature(
        example, np.asarray(booster.predict(example.to_numpy(), num_threads=1))
    )
    if typed_pyfunc:
        from training import mlflow_model

        typed, typed_sig = mlflow_model.typed_signature(booster, example, model_contract)
        with mlflow_uris(tracking_uri), mlflow.start_run(experiment_id=exp_id):
            info = mlflow_model.log_model(
                booster,
                model_contract,
                typed,
                typed_sig,
                pip_requirements=["lightgbm"],
                registered_model_name=name,
            )
    else:
        with mlflow_uris(tracking_uri), mlflow.start_run(experiment_id=exp_id):
            info = mlflow.lightgbm.log_model(
                booster,
                name="model",
                signature=signature,
                metadata=contract_metadata(model_contract),
                pip_requirements=["lightgbm"],
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version
