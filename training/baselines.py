"""Baselines the predictors must beat, fitted and scored on the same split every run.

Each baseline reads a *training-set frame* (one row per customer and cutoff, see
:func:`training.pipeline.build_training_set`): the purchase-history summary of
:func:`training.labels.label_table`, the features, and the labels. Each predicts the
same quantity as the model: P(churn) for ``churn``, expected net spend in the horizon
for ``value``.

- ``recency``: the training label mean in each of 20 recency bins.
- ``rfm``: the RFM heuristic: recency, frequency and monetary quintiles (cut on the
  training rows) give 125 cells; the prediction is each cell's training label mean,
  shrunk towards the overall mean for small cells.
- ``linear``: logistic regression (churn) or ridge regression (value) on the model's
  numeric features, signed-log transformed, median-imputed with missing indicators.
- ``bgnbd``: BG/NBD (+ Gamma-Gamma for value) fitted by maximum likelihood on the
  purchase history before each scored cutoff (it needs no labels).
- ``paretonbd``: the same with Pareto/NBD (dropout at any time, not only at purchases).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from training.clv import BGNBD, GammaGamma
from training.pareto_nbd import ParetoNBD

__all__ = [
    "BGNBDBaseline",
    "Baseline",
    "LinearBaseline",
    "ParetoNBDBaseline",
    "RFMBaseline",
    "RecencyBaseline",
    "make_baselines",
]

Target = Literal["churn", "value"]

_MAX_LINEAR_ROWS = 300_000


class Baseline(Protocol):
    """What every baseline offers."""

    name: str

    def fit(self, train: pd.DataFrame) -> Baseline:
        """Fit on training-set rows."""
        ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict for training-set-shaped rows."""
        ...


def _label(frame: pd.DataFrame, target: Target) -> np.ndarray:
    return frame[target].to_numpy(dtype=np.float64)


def _net_monetary(frame: pd.DataFrame) -> np.ndarray:
    return (frame["purchase_amount"] - frame["refund_amount"]).to_numpy(dtype=np.float64)


def _quantile_edges(values: np.ndarray, n: int) -> np.ndarray:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n + 1)[1:-1]))
    return edges


class RecencyBaseline:
    """Label mean per recency bin (days since the last purchase)."""

    name = "recency"

    def __init__(self, target: Target, n_bins: int = 20) -> None:
        self.target = target
        self.n_bins = n_bins

    def fit(self, train: pd.DataFrame) -> RecencyBaseline:
        rec = train["days_since_last_purchase"].to_numpy(dtype=np.float64)
        self.edges_ = _quantile_edges(rec, self.n_bins)
        bins = np.searchsorted(self.edges_, rec, side="right")
        y = _label(train, self.target)
        sums = np.bincount(bins, weights=y, minlength=len(self.edges_) + 1)
        counts = np.bincount(bins, minlength=len(self.edges_) + 1)
        self.overall_ = float(y.mean())
        self.means_ = np.where(counts > 0, sums / np.maximum(counts, 1), self.overall_)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        rec = frame["days_since_last_purchase"].to_numpy(dtype=np.float64)
        return np.asarray(self.means_[np.searchsorted(self.edges_, rec, side="right")])


class RFMBaseline:
    """The RFM heuristic: label mean per R x F x M quintile cell, shrunk to the mean."""

    name = "rfm"

    def __init__(self, target: Target, n_quantiles: int = 5, shrinkage: float = 20.0) -> None:
        self.target = target
        self.n_quantiles = n_quantiles
        self.shrinkage = shrinkage

    def _cells(self, frame: pd.DataFrame) -> np.ndarray:
        r = np.searchsorted(
            self.r_edges_, frame["days_since_last_purchase"].to_numpy(float), "right"
        )
        f = np.searchsorted(self.f_edges_, frame["n_purchase_days"].to_numpy(float), "right")
        m = np.searchsorted(self.m_edges_, _net_monetary(frame), "right")
        k = self.n_quantiles
        return np.asarray((r * k + f) * k + m)

    def fit(self, train: pd.DataFrame) -> RFMBaseline:
        k = self.n_quantiles
        self.r_edges_ = _quantile_edges(train["days_since_last_purchase"].to_numpy(float), k)
        self.f_edges_ = _quantile_edges(train["n_purchase_days"].to_numpy(float), k)
        self.m_edges_ = _quantile_edges(_net_monetary(train), k)
        cells = self._cells(train)
        y = _label(train, self.target)
        size = k**3
        sums = np.bincount(cells, weights=y, minlength=size)
        counts = np.bincount(cells, minlength=size)
        self.overall_ = float(y.mean())
        self.means_ = (sums + self.shrinkage * self.overall_) / (counts + self.shrinkage)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.means_[self._cells(frame)])


def _signed_log_(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``, in place."""
    sign = np.signbit(x)
    np.abs(x, out=x)
    np.log1p(x, out=x)
    np.negative(x, out=x, where=sign)
    return x


class LinearBaseline:
    """Logistic (churn) or ridge (value) regression on the numeric model features.

    Inputs are signed-log transformed, median-imputed with an indicator column per
    feature missing somewhere in the training rows (an all-missing feature is imputed
    with 0), then standardised. The logistic regression is solved by Newton's method
    (exact Hessian, Cholesky), which reaches the optimum of the L2-penalised likelihood
    in a handful of iterations where L-BFGS needs over a hundred.
    """

    name = "linear"

    def __init__(self, target: Target, feature_names: list[str], seed: int = 0) -> None:
        self.target = target
        self.feature_names = feature_names
        self.seed = seed

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        # Column-major: each feature is written contiguously.
        out = np.empty((len(frame), len(self.feature_names)), dtype=np.float64, order="F")
        for j, c in enumerate(self.feature_names):
            out[:, j] = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        return _signed_log_(out)

    def _design(self, x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        np.copyto(x, np.broadcast_to(self.medians_, x.shape), where=missing)
        z = np.empty((len(x), x.shape[1] + len(self.indicators_)), dtype=np.float64, order="F")
        z[:, : x.shape[1]] = x
        z[:, x.shape[1] :] = missing[:, self.indicators_]
        z -= self.mean_
        z /= self.scale_
        return z

    def fit(self, train: pd.DataFrame) -> LinearBaseline:
        if len(train) > _MAX_LINEAR_ROWS:
            # The rows DataFrame.sample(random_state=seed) draws, taken by position in
            # order (the frame may be a view of the training set; its index need not
            # be unique).
            rows = np.random.RandomState(self.seed).choice(
                len(train), _MAX_LINEAR_ROWS, replace=False
            )
            train = train.iloc[np.sort(rows)]
        x = self._x(train)
        y = _label(train, self.target)
        missing = np.isnan(x)
        self.indicators_ = np.flatnonzero(missing.any(axis=0))
        medians = np.zeros(x.shape[1])
        for j in range(x.shape[1]):
            present = x[~missing[:, j], j]
            if len(present):
                medians[j] = np.median(present)
        self.medians_ = medians
        self.mean_ = np.zeros(x.shape[1] + len(self.indicators_))
        self.scale_ = np.ones_like(self.mean_)
        z = self._design(x)
        self.mean_ = z.mean(axis=0)
        var = z.var(axis=0)
        # Columns constant up to rounding keep unit scale, with StandardScaler's test
        # (the error bound of two-pass variance, Chan, Golub & LeVeque).
        eps = np.finfo(np.float64).eps
        constant = var <= len(z) * eps * var + (len(z) * self.mean_ * eps) ** 2
        self.scale_ = np.where(constant, 1.0, np.sqrt(var))
        z -= self.mean_
        z /= self.scale_
        self.model_: LogisticRegression | Ridge
        # One BLAS thread: the Hessian products are small enough that a second thread
        # gains little, and OpenBLAS threads that spin-wait on a busy core (or next to
        # the SHAP thread training runs meanwhile) made them ten times slower.
        with threadpool_limits(limits=1, user_api="blas"):
            if self.target == "churn":
                self.model_ = LogisticRegression(
                    C=1.0, solver="newton-cholesky", tol=1e-8, max_iter=100
                )
                self.model_.fit(z, y.astype(int))
            else:
                self.model_ = Ridge(alpha=1.0).fit(z, y)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        z = self._design(self._x(frame))
        if self.target == "churn":
            return np.asarray(self.model_.predict_proba(z)[:, 1])
        return np.clip(np.asarray(self.model_.predict(z), dtype=np.float64), 0, None)


class BGNBDBaseline:
    """BG/NBD (+ Gamma-Gamma) fitted on each scored cutoff's purchase history, in weeks.

    Transactions are purchase days (same-day purchases are one transaction, as in the
    CDNOW studies); spend per transaction is the gross amount per purchase day.
    """

    name = "bgnbd"
    model: type[BGNBD] | type[ParetoNBD] = BGNBD

    def __init__(self, target: Target, horizon_days: int, seed: int = 0) -> None:
        self.target = target
        self.horizon_days = horizon_days
        self.seed = seed

    def fit(self, train: pd.DataFrame) -> BGNBDBaseline:
        # Unsupervised: fitted per scored cutoff in predict(); nothing to learn from labels.
        return self

    @staticmethod
    def _rft(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first = frame["days_since_first_purchase"].to_numpy(dtype=np.float64)
        last = frame["days_since_last_purchase"].to_numpy(dtype=np.float64)
        x = frame["n_purchase_days"].to_numpy(dtype=np.float64) - 1
        return x, (first - last) / 7.0, first / 7.0

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty(len(frame), dtype=np.float64)
        self.models_: dict[pd.Timestamp, tuple[BGNBD | ParetoNBD, GammaGamma | None]] = {}
        t = self.horizon_days / 7.0
        # Codes, not values: a tz-aware column would become an array of Timestamp objects.
        codes, cutoffs = pd.factorize(frame["cutoff"])
        for code, cutoff in enumerate(cutoffs):
            rows = codes == code
            part = frame.loc[rows]
            x, t_x, big_t = self._rft(part)
            bg = self.model().fit(x, t_x, big_t, seed=self.seed)
            gg: GammaGamma | None = None
            if self.target == "churn":
                out[rows] = bg.prob_no_purchase(t, x, t_x, big_t)
            else:
                n_tx = part["n_purchase_days"].to_numpy(dtype=np.float64)
                gross = part["purchase_amount"].to_numpy(dtype=np.float64)
                mean_spend = gross / np.maximum(n_tx, 1)
                gg = GammaGamma().fit(n_tx, mean_spend, seed=self.seed)
                refunds = part["refund_amount"].to_numpy(dtype=np.float64)
                net_share = max(0.0, 1.0 - refunds.sum() / max(gross.sum(), 1e-9))
                out[rows] = (
                    bg.expected_purchases(t, x, t_x, big_t)
                    * gg.expected_spend(n_tx, mean_spend)
                    * net_share
                )
            self.models_[pd.Timestamp(cutoff)] = (bg, gg)
        return out


class ParetoNBDBaseline(BGNBDBaseline):
    """Pareto/NBD (+ Gamma-Gamma) fitted like :class:`BGNBDBaseline`."""

    name = "paretonbd"
    model = ParetoNBD


def make_baselines(
    target: Target, *, numeric_features: list[str], horizon_days: int, seed: int = 0
) -> list[Baseline]:
    """Unfitted baselines for ``target``, in report order."""
    return [
        RecencyBaseline(target),
        RFMBaseline(target),
        LinearBaseline(target, numeric_features, seed=seed),
        BGNBDBaseline(target, horizon_days, seed=seed),
        ParetoNBDBaseline(target, horizon_days, seed=seed),
    ]
