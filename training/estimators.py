"""The predictors: LightGBM estimators with an sklearn interface; factories return them unfitted.

Both take the float matrix of :func:`scoring.contract.model_matrix` (categoricals as
integer codes, listed by index in ``categorical_indices``) and an optional time-based
validation slice (``X_val``, ``y_val``) for early stopping. The churn classifier also
calibrates its probabilities on that slice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from scoring.contract import Calibration, IsotonicCalibration, ModelContract, PlattCalibration
from scoring.contract import calibrate as apply_calibration
from training.config import TrainingConfig
from training.errors import TrainingError

__all__ = ["ChurnClassifier", "ValueRegressor", "make_churn_model", "make_value_model"]

_EARLY_STOPPING_ROUNDS = 30
_ISOTONIC_TILT = 1e-3


def _train(
    params: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    categorical: list[int],
    num_boost_round: int,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
) -> lgb.Booster:
    if len(x) == 0:
        raise TrainingError("Expected training rows. Got an empty training set.")
    train = lgb.Dataset(x, y, categorical_feature=categorical or "auto", free_raw_data=True)
    valid_sets: list[lgb.Dataset] = []
    callbacks: list[Callable[..., Any]] = []
    if x_val is not None and y_val is not None and len(x_val):
        valid_sets = [
            lgb.Dataset(x_val, y_val, reference=train, categorical_feature=categorical or "auto")
        ]
        callbacks = [lgb.early_stopping(_EARLY_STOPPING_ROUNDS, verbose=False)]
    return lgb.train(
        params, train, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=callbacks
    )


def _base_params(seed: int, learning_rate: float, num_leaves: int, n_jobs: int) -> dict[str, Any]:
    return {
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_bin": 255,
        "seed": seed,
        "deterministic": True,
        "num_threads": n_jobs,
        "verbose": -1,
    }


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM binary classifier of churn, calibrated on the validation slice.

    Args:
        num_boost_round: Upper bound on boosting rounds (early stopping on validation).
        learning_rate: Shrinkage.
        num_leaves: Tree size.
        calibration: ``isotonic``, ``platt`` or ``none``; fitted on the validation
            slice's raw scores (never on training rows, whose scores are optimistic).
        categorical_indices: Matrix columns holding categorical codes.
        seed: Random seed.
        n_jobs: Threads while fitting (the logged booster predicts on one).
    """

    def __init__(
        self,
        num_boost_round: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        calibration: Literal["isotonic", "platt", "none"] = "isotonic",
        categorical_indices: tuple[int, ...] = (),
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.num_boost_round = num_boost_round
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.calibration = calibration
        self.categorical_indices = categorical_indices
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> ChurnClassifier:
        """Fit on ``X, y``; early-stop and calibrate on ``X_val, y_val`` when given."""
        y = np.asarray(y, dtype=np.float64)
        if len(np.unique(y)) < 2:
            raise TrainingError(
                "Expected both churners and non-churners among training rows. Got only "
                f"{'churners' if y.size and y[0] == 1 else 'non-churners'}: widen the cutoffs "
                "or the horizon."
            )
        params = {
            **_base_params(self.seed, self.learning_rate, self.num_leaves, self.n_jobs),
            "objective": "binary",
            "metric": "binary_logloss",
        }
        yv = None if y_val is None else np.asarray(y_val, dtype=np.float64)
        self.booster_ = _train(
            params,
            X,
            y,
            categorical=list(self.categorical_indices),
            num_boost_round=self.num_boost_round,
            x_val=X_val,
            y_val=yv,
        )
        self.classes_ = np.array([0, 1])
        self.calibration_: Calibration | None = None
        # Kept: choosing the champion and the blend's weight read the same raw
        # validation scores, and predicting the validation rows again costs seconds at 1M.
        self.validation_raw_: np.ndarray | None = None
        if self.calibration != "none" and X_val is not None and yv is not None and len(X_val):
            raw = np.asarray(self.booster_.predict(X_val, num_threads=self.n_jobs), dtype=float)
            self.validation_raw_ = raw
            self.calibration_ = _fit_calibration(raw, yv, self.calibration)
        return self

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated LightGBM probabilities."""
        return np.asarray(self.booster_.predict(X, num_threads=self.n_jobs), dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated ``[P(stay), P(churn)]`` per row."""
        raw = self.predict_raw(X)
        p = raw if self.calibration_ is None else _calibrate(raw, self.calibration_)
        return np.column_stack([1 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where the calibrated churn probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _calibrate(raw: np.ndarray, calibration: Calibration) -> np.ndarray:
    contract = ModelContract(
        target="churn", horizon_days=1, feature_names=["_"], calibration=calibration
    )
    return apply_calibration(raw, contract)


def _fit_calibration(raw: np.ndarray, y: np.ndarray, kind: str) -> Calibration:
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        knots_x = np.asarray(iso.X_thresholds_, dtype=np.float64)
        knots_y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        span = knots_x[-1] - knots_x[0] if len(knots_x) else 0.0
        if span > 0:
            # Isotonic steps tie customers the booster ranks apart, which costs AUC and
            # top-decile lift for nothing: a 0.1 % tilt toward the raw order keeps the
            # map strictly increasing between its end knots (probabilities move < 0.001).
            knots_y = (1 - _ISOTONIC_TILT) * knots_y + _ISOTONIC_TILT * (
                knots_x - knots_x[0]
            ) / span
        return IsotonicCalibration(
            x=[float(v) for v in knots_x], y=[float(v) for v in np.clip(knots_y, 0.0, 1.0)]
        )
    eps = 1e-12
    p = np.clip(raw, eps, 1 - eps)
    logit = (np.log(p) - np.log1p(-p)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6).fit(logit, y)
    # sklearn's p = 1 / (1 + exp(-(w * logit + c))): Platt's a = -w, b = -c.
    return PlattCalibration(a=float(-lr.coef_[0, 0]), b=float(-lr.intercept_[0]))


class ValueRegressor(RegressorMixin, BaseEstimator):
    """LightGBM regressor of net spend in the horizon with a Tweedie loss.

    A Tweedie (compound Poisson-gamma) loss with a log link models spend that is
    exactly zero for many customers and heavy-tailed for the rest in one model, whose
    prediction is the expected spend. Negative targets (refunds exceeding purchases)
    are clipped to zero for fitting.

    Args:
        num_boost_round: Upper bound on boosting rounds (early stopping on validation).
        learning_rate: Shrinkage.
        num_leaves: Tree size.
        tweedie_variance_power: In (1, 2).
        categorical_indices: Matrix columns holding categorical codes.
        seed: Random seed.
        n_jobs: Threads while fitting.
    """

    def __init__(
        self,
        num_boost_round: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        tweedie_variance_power: float = 1.3,
        categorical_indices: tuple[int, ...] = (),
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.num_boost_round = num_boost_round
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.tweedie_variance_power = tweedie_variance_power
        self.categorical_indices = categorical_indices
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> ValueRegressor:
        """Fit on ``X, y``; early-stop on ``X_val, y_val`` when given."""
        y = np.clip(np.asarray(y, dtype=np.float64), 0, None)
        if not np.any(y > 0):
            raise TrainingError(
                "Expected some customers with spend in the horizon among training rows. "
                "Got none: widen the cutoffs or the horizon."
            )
        params = {
            **_base_params(self.seed, self.learning_rate, self.num_leaves, self.n_jobs),
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "metric": "tweedie",
        }
        yv = None if y_val is None else np.clip(np.asarray(y_val, dtype=np.float64), 0, None)
        self.booster_ = _train(
            params,
            X,
            y,
            categorical=list(self.categorical_indices),
            num_boost_round=self.num_boost_round,
            x_val=X_val,
            y_val=yv,
        )
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected net spend in the horizon per row."""
        return np.asarray(self.booster_.predict(X, num_threads=self.n_jobs), dtype=np.float64)


def make_churn_model(
    config: TrainingConfig, *, categorical_indices: tuple[int, ...] = (), n_jobs: int = 2
) -> ChurnClassifier:
    """An unfitted churn classifier configured from ``config``."""
    return ChurnClassifier(
        num_boost_round=config.num_boost_round,
        learning_rate=config.learning_rate,
        num_leaves=config.num_leaves,
        calibration=config.calibration,
        categorical_indices=categorical_indices,
        seed=config.seed,
        n_jobs=n_jobs,
    )


def make_value_model(
    config: TrainingConfig, *, categorical_indices: tuple[int, ...] = (), n_jobs: int = 2
) -> ValueRegressor:
    """An unfitted value regressor configured from ``config``."""
    return ValueRegressor(
        num_boost_round=config.num_boost_round,
        learning_rate=config.learning_rate,
        num_leaves=config.num_leaves,
        tweedie_variance_power=config.tweedie_variance_power,
        categorical_indices=categorical_indices,
        seed=config.seed,
        n_jobs=n_jobs,
    )
