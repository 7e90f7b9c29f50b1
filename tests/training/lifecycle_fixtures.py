"""Tiny registered LightGBM models for the lifecycle tests (registry, promotion, CLI).

A session builds one MLflow store (SQLite + artifacts) with a few versions of
``churn-predictor`` and ``value-predictor``; each test copies it, so tests can move
aliases freely and still run in well under a second each.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.contract import ModelContract, contract_metadata

FEATURES = ["recency_days", "frequency_orders", "monetary_total", "noise"]


def make_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features with a churn label and a value label that depend on the first two."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, n)
    freq = rng.poisson(3, n).astype(float)
    money = freq * rng.gamma(2, 20, n)
    noise = rng.normal(size=n)
    logit = 0.03 * recency - 0.6 * freq + 0.5
    churn = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    value = np.where(churn == 1, 0.0, money * rng.gamma(3, 1 / 3, n) / 2)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": recency,
            "frequency_orders": freq,
            "monetary_total": money,
            "noise": noise,
        }
    )
    return frame, churn, value


def uri_of(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def log_version(
    root: Path,
    name: str,
    model: Any,
    contract: ModelContract,
    *,
    alias: str | None = None,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
) -> str:
    """Log and register ``model`` the way training does; return the version."""
    import mlflow
    from mlflow import MlflowClient

    uri = uri_of(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    exp = client.get_experiment_by_name("lifecycle-tests")
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            "lifecycle-tests", artifact_location=(root / "artifacts").as_uri()
        )
    )
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.log_params(params or {"cutoffs": "2024-01-01,2024-02-01", "horizon_days": 90})
        mlflow.log_metrics(metrics or {})
        info = mlflow.lightgbm.log_model(
            model,
            name="model",
            pip_requirements=["lightgbm"],
            metadata=contract_metadata(contract),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return version


def contract(target: str, features: list[str]) -> ModelContract:
    return ModelContract(target=target, horizon_days=90, feature_names=features)


@dataclass(frozen=True)
class Store:
    """A copied test store: its folder and the versions it holds."""

    root: Path
    versions: dict[str, str]

    @property
    def uri(self) -> str:
        return uri_of(self.root)


def build_template(root: Path) -> dict[str, str]:
    """Register: churn v1 strong, v2 strong (other seed), v3 weak (noise only);
    value v1 strong, v2 weak. Aliases: challenger on churn v1 and value v1."""
    import lightgbm as lgb

    frame, churn, value = make_frame(800, seed=1)
    x_all = frame[FEATURES].to_numpy()
    x_noise = frame[["noise"]].to_numpy()
    params = {"n_estimators": 30, "num_leaves": 7, "n_jobs": 1, "verbose": -1}
    out = {}
    strong = lgb.LGBMClassifier(random_state=1, **params).fit(x_all, churn)
    out["churn_strong"] = log_version(
        root,
        "churn-predictor",
        strong,
        contract("churn", FEATURES),
        alias="challenger",
        metrics={"auc": 0.8, "brier": 0.2},
    )
    strong2 = lgb.LGBMClassifier(random_state=2, subsample=0.8, subsample_freq=1, **params).fit(
        x_all, churn
    )
    out["churn_strong2"] = log_version(
        root,
        "churn-predictor",
        strong2,
        contract("churn", FEATURES),
        metrics={"auc": 0.81, "brier": 0.19},
    )
    weak = lgb.LGBMClassifier(random_state=1, **params).fit(x_noise, churn)
    out["churn_weak"] = log_version(
        root,
        "churn-predictor",
        weak,
        contract("churn", ["noise"]),
        metrics={"auc": 0.5, "brier": 0.3},
    )
    reg = lgb.LGBMRegressor(objective="tweedie", random_state=1, **params).fit(x_all, value)
    out["value_strong"] = log_version(
        root, "value-predictor", reg, contract("value", FEATURES), alias="challenger"
    )
    reg_weak = lgb.LGBMRegressor(objective="tweedie", random_state=1, **params).fit(x_noise, value)
    out["value_weak"] = log_version(root, "value-predictor", reg_weak, contract("value", ["noise"]))
    return out


def copy_store(template: Path, versions: dict[str, str], dest: Path) -> Store:
    """Copy the template's database; artifacts stay shared (read-only) in the template."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "mlflow.db", dest / "mlflow.db")
    return Store(dest, dict(versions))
