"""The purchase-log phase of ``benchmarks/quality.py``: a BTYD calibration/holdout study.

A purchase-only log (``synthetic.purchase_log``: heavy-tailed spend, same-day repeat
purchases, no order ids, strong seasonality) of 18 months. Everything is fitted on the
first 12 months (the calibration period, as a user with one year of history would:
``train_predictor`` with a 181-day horizon) and scored on the customers who bought in
it, against what they did in the next 181 days (the holdout), exactly like the
calibration/holdout studies of the BTYD literature.

Scorers: ``model`` (what ``tagsmith train`` registers), and the baselines
``paretonbd`` and ``bgnbd`` (each with Gamma-Gamma for value), ``lgbm_rfm`` (LightGBM
on recency, frequency, monetary and age alone), ``linear`` (logistic / ridge
regression on the model's features), ``recency`` and ``rfm``. Criteria per seed: the
model beats every baseline on churn AUC, Brier and log loss and on value normalised
Gini, top-10 % capture and Spearman; predicted total spend within 5 % of actual.

    PYTHONPATH=. python benchmarks/quality.py --phase purchase-log --customers 30000 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.spec import default_spec, spec_hash
from scoring.contract import ModelContract, model_matrix, score_frame
from synthetic.purchase_log import purchase_log
from training.baselines import make_baselines
from training.config import TrainingConfig
from training.estimators import make_churn_model, make_value_model
from training.evaluation import metrics_for
from training.labels import label_table
from training.pipeline import build_training_set, train_predictor

__all__ = ["CRITERIA", "purchase_log_phase"]

CALIBRATION_END = pd.Timestamp("2024-01-01", tz="UTC")
HORIZON_DAYS = 181
RFM_ONLY = ["recency_days", "frequency_days", "monetary_total", "monetary_mean", "tenure_days"]
# Metric -> higher is better.
CRITERIA = {
    "churn": {"auc": True, "brier": False, "log_loss": False},
    "value": {"normalized_gini": True, "top_decile_capture": True, "spearman": True},
}


def _lgbm_rfm(ts: Any, target: str, config: TrainingConfig, frame: pd.DataFrame) -> np.ndarray:
    names = [n for n in RFM_ONLY if n in ts.feature_names]
    contract = ModelContract(
        target=target,  # type: ignore[arg-type]
        horizon_days=HORIZON_DAYS,
        feature_names=names,
        categorical_levels={},
    )
    make = make_churn_model if target == "churn" else make_value_model
    model = make(config, categorical_indices=())
    train, val = ts.slice("train"), ts.slice("validation")
    model.fit(
        model_matrix(train, contract),
        train[target].to_numpy(dtype=np.float64),
        X_val=model_matrix(val, contract),
        y_val=val[target].to_numpy(dtype=np.float64),
    )
    if target == "churn":
        contract = contract.model_copy(update={"calibration": model.calibration_})
    return np.asarray(score_frame(model.booster_, frame, contract))


def _one_seed(n: int, seed: int, config: TrainingConfig) -> dict[str, dict[str, dict[str, float]]]:
    t0 = time.perf_counter()
    data = purchase_log(n, start="2023-01-01", end="2024-06-29", seed=seed)
    events = data.events
    calib = events.loc[events["occurred_at"] < CALIBRATION_END].reset_index(drop=True)
    buyers = calib["customer_id"].unique()
    customers = data.customers.loc[data.customers["customer_id"].isin(buyers)]
    customers = customers.reset_index(drop=True)
    print(
        f"\nseed {seed}: {len(customers):,} customers bought in the calibration year "
        f"({len(calib):,} rows, {int(calib.duplicated().sum()):,} identical repeats); "
        f"holdout {len(events) - len(calib):,} rows; generated in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    spec = default_spec()
    # Holdout labels and the calibration-period summary at the end of the calibration.
    frame = label_table(events, [CALIBRATION_END], horizon_days=HORIZON_DAYS)
    feats = build_features(customers, calib, as_of=CALIBRATION_END, spec=spec)
    feats["customer_id"] = feats["customer_id"].astype("string")
    frame = frame.merge(feats, on="customer_id", how="inner", validate="one_to_one")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for target in ("churn", "value"):
        t1 = time.perf_counter()
        r = train_predictor(
            customers,
            calib,
            target=target,
            config=config,
            feature_builder=build_features,
            spec=spec,
            spec_hash=spec_hash(spec),
        )
        ts = build_training_set(
            customers, calib, plan=r.plan, feature_builder=build_features, spec=spec
        )
        y = frame[target].to_numpy(dtype=np.float64)
        scores = {"model": score_frame(r.estimator.booster_, frame, r.contract)}
        numeric = [n for n in ts.feature_names if n not in ts.categorical_levels]
        fit_rows = ts.slice("fit")
        for baseline in make_baselines(
            target,
            numeric_features=numeric,
            horizon_days=HORIZON_DAYS,
            seed=config.seed,
        ):
            scores[baseline.name] = baseline.fit(fit_rows).predict(frame)
        scores["lgbm_rfm"] = _lgbm_rfm(ts, target, config, frame)
        out[target] = {name: metrics_for(target, y, s) for name, s in scores.items()}
        unused = len(r.dropped_features)
        print(
            f"  {target}: plan {'grouped' if r.plan.grouped else 'time'} "
            f"{[c.date().isoformat() for c in r.plan.train]}, rows {r.rows}, "
            f"{len(r.contract.feature_names)} features ({unused} not used), champion "
            f"{r.champion}{_blend_text(r.contract)}, "
            f"{time.perf_counter() - t1:.0f} s"
        )
        table = pd.DataFrame(out[target]).T
        cols = [*CRITERIA[target], *(["total_ratio"] if target == "value" else [])]
        print(table[cols].round(4).to_string())
    return out


def _blend_text(contract: ModelContract) -> str:
    b = contract.blend
    return "" if b is None else f" (weight {b.weight} on LightGBM)"


def _verdicts(metrics: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Criteria the model misses on one seed, as short texts."""
    misses = []
    for target, crit in CRITERIA.items():
        m = metrics[target]
        for metric, higher in crit.items():
            model = m["model"][metric]
            for name, values in m.items():
                if name == "model":
                    continue
                other = values[metric]
                beats = model > other if higher else model < other
                if not beats:
                    misses.append(f"{target} {metric}: {name} {other:.4f} vs model {model:.4f}")
    ratio = metrics["value"]["model"]["total_ratio"]
    if not abs(ratio - 1) <= 0.05:
        misses.append(f"value total_ratio {ratio:.3f} (want 0.95..1.05)")
    return misses


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def purchase_log_phase(args: argparse.Namespace, config: TrainingConfig) -> list[str]:
    """Run the study per seed; print per-seed tables, mean +- sd and the criteria."""
    config = config.model_copy(update={"horizon_days": HORIZON_DAYS})
    seeds = [int(s) for s in str(args.seeds).split(",") if s]
    runs = {seed: _one_seed(args.customers, seed, config) for seed in seeds}
    failures: list[str] = []
    for target, crit in CRITERIA.items():
        cols = [*crit, *(["total_ratio"] if target == "value" else [])]
        stacked = {
            name: pd.DataFrame([runs[s][target][name] for s in seeds])[cols]
            for name in runs[seeds[0]][target]
        }
        summary = pd.DataFrame(
            {
                name: {c: f"{frame[c].mean():.4f} +- {_sd(frame[c]):.4f}" for c in cols}
                for name, frame in stacked.items()
            }
        ).T
        print(f"\n{target}: mean +- sd over seeds {seeds}")
        print(summary.to_string())
    for seed in seeds:
        misses = _verdicts(runs[seed])
        ok = not misses
        print(
            f"  {'PASS' if ok else 'FAIL'}  seed {seed}: model beats every baseline on every metric"
        )
        for miss in misses:
            print(f"        loses: {miss}")
        if not ok:
            failures.append(f"seed {seed}")
    return failures
