"""Candidate predictors, fitted on the same rows, and the champion chosen on validation.

On a small training set (fewer than :data:`SMALL_TRAINING_ROWS` rows) the default
LightGBM (``training.num_leaves`` leaves) overfits where a plainer model does not: on
the 5,000-customer demo it ranked churn below logistic regression. Small sets therefore
also fit LightGBM with 7-leaf trees, and the candidate with the best validation metric
(churn AUC, value normalised Gini of the raw predictions) wins; the test cutoff never
takes part in the choice. Large sets fit one candidate, as before (the speed budget).
Every candidate is a LightGBM booster with the same contract, so whichever wins is
registered and served unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scoring.contract import ModelContract, calibrate, score_frame
from training.config import TrainingConfig
from training.estimators import ChurnClassifier, ValueRegressor, make_churn_model, make_value_model
from training.evaluation import metrics_for

__all__ = [
    "SELECTION_METRIC",
    "SMALL_TRAINING_ROWS",
    "Candidate",
    "fit_candidates",
    "score_candidates",
]

Target = Literal["churn", "value"]
SMALL_TRAINING_ROWS = 200_000
SMALL_TREE_LEAVES = 7
SELECTION_METRIC: dict[str, str] = {"churn": "auc", "value": "normalized_gini"}


@dataclass
class Candidate:
    """One fitted candidate.

    Attributes:
        name: ``lightgbm`` or ``lightgbm_small_trees``.
        num_leaves: Its tree size.
        estimator: The fitted estimator.
        validation: Its metrics on the validation rows (raw predictions).
        test: Its metrics on the test rows (filled by the caller, for the card).
        contract_update: What it changes in the model contract (the ``blend``
            candidate: its BTYD blend and no calibration); empty for the others,
            whose estimator's calibration goes in.
        validation_raw: Its booster's raw outputs on the validation rows (``None``
            without them), which the blend reads too.
    """

    name: str
    num_leaves: int
    estimator: ChurnClassifier | ValueRegressor
    validation: dict[str, float]
    test: dict[str, float] = field(default_factory=dict)
    contract_update: dict[str, Any] = field(default_factory=dict)
    validation_raw: np.ndarray | None = None

    def contract(self, base: ModelContract) -> ModelContract:
        """``base`` with this candidate's calibration or blend."""
        update = self.contract_update or {
            "calibration": getattr(self.estimator, "calibration_", None),
            "blend": None,
        }
        return base.model_copy(update=update)


def _configs(config: TrainingConfig, n_rows: int) -> list[tuple[str, TrainingConfig]]:
    out = [("lightgbm", config)]
    if n_rows < SMALL_TRAINING_ROWS and config.num_leaves > SMALL_TREE_LEAVES:
        out.append(
            ("lightgbm_small_trees", config.model_copy(update={"num_leaves": SMALL_TREE_LEAVES}))
        )
    return out


def fit_candidates(
    target: Target,
    config: TrainingConfig,
    *,
    categorical_indices: tuple[int, ...],
    n_jobs: int,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    progress: Callable[[str], None],
) -> tuple[Candidate, list[Candidate]]:
    """Fit every candidate on the training rows; return the champion and all of them.

    The champion has the best validation metric (:data:`SELECTION_METRIC`); ties keep
    the earlier (default) candidate.
    """
    metric = SELECTION_METRIC[target]
    fitted: list[Candidate] = []
    for name, cfg in _configs(config, len(x_train)):
        progress(f"fitting candidate {name} ({cfg.num_leaves} leaves) on {len(x_train):,} rows")
        estimator: ChurnClassifier | ValueRegressor
        if target == "churn":
            estimator = make_churn_model(
                cfg, categorical_indices=categorical_indices, n_jobs=n_jobs
            )
        else:
            estimator = make_value_model(
                cfg, categorical_indices=categorical_indices, n_jobs=n_jobs
            )
        estimator.fit(x_train, y_train, X_val=x_val, y_val=y_val)
        # The churn classifier predicted the validation rows to calibrate: the same
        # booster, the same rows, the same outputs.
        raw = getattr(estimator, "validation_raw_", None)
        if raw is None or len(raw) != len(x_val):
            raw = estimator.booster_.predict(x_val, num_threads=n_jobs)
        raw = np.asarray(raw, dtype=np.float64)
        validation = metrics_for(target, y_val, raw) if len(y_val) else {}
        fitted.append(Candidate(name, cfg.num_leaves, estimator, validation, validation_raw=raw))
    best = fitted[0]
    for cand in fitted[1:]:
        if cand.validation.get(metric, np.nan) > best.validation.get(metric, np.nan):
            best = cand
    if len(fitted) > 1:
        progress(
            f"champion on validation {metric}: {best.name} "
            + ", ".join(f"{c.name} {c.validation.get(metric, np.nan):.4f}" for c in fitted)
        )
    return best, fitted


def score_candidates(
    candidates: list[Candidate],
    champion: Candidate,
    test: pd.DataFrame,
    contract: ModelContract,
    champion_metrics: dict[str, float],
    *,
    champion_raw: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Fill each candidate's test metrics (for the card; never used to choose).

    ``champion_raw`` is ``(x, raw)``: the test rows' model matrix and the champion
    booster's raw outputs on it. A candidate with the same booster (the ``blend`` and
    the LightGBM it blends) is then scored from them, not predicted again: the same
    scores as :func:`scoring.contract.score_frame` gives.
    """
    y = test[contract.target].to_numpy(dtype=np.float64)
    for cand in candidates:
        if cand is champion:
            cand.test = champion_metrics
            continue
        if champion_raw is not None and cand.estimator.booster_ is champion.estimator.booster_:
            x, raw = champion_raw
            scored = calibrate(raw, cand.contract(contract), x)
        else:
            scored = score_frame(cand.estimator.booster_, test, cand.contract(contract))
        cand.test = metrics_for(contract.target, y, scored)
