"""Pareto/NBD and Gamma-Gamma predictions from fitted parameters, and the BTYD blend.

The predictive formulas live here, not in ``training``, because a registered model can
carry a fitted Pareto/NBD (+ Gamma-Gamma) in its contract (:class:`BTYDBlend`): its
score blends the booster's output with the BTYD prediction computed from the same
feature row, so batch tagging, ``/score`` and ``predict`` need the formulas without
importing ``training`` (which fits the parameters: :mod:`training.pareto_nbd`).

Time is in weeks. Per customer: ``x`` repeat purchases (purchase days minus one),
``t_x`` the time of the last purchase since the first, ``T`` the time since the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scoring.season import operational_weeks, seasonal_inputs

__all__ = [
    "BTYDBlend",
    "blend_inputs",
    "blend_scores",
    "btyd_prediction",
    "gamma_gamma_spend",
    "horizon_weeks",
    "log_integral",
    "logsumexp_rows",
    "pareto_expected_purchases",
    "pareto_prob_alive",
    "pareto_prob_no_purchase",
]

NODES, WEIGHTS = np.polynomial.legendre.leggauss(20)
LOG_WEIGHTS = np.log(WEIGHTS)
# Rows per block of (rows x nodes) arrays: 16k rows x 20 nodes stay in cache; at 1M rows
# pareto_prob_no_purchase costs ~0.5x the CPU of 200k-row blocks, bit for bit the same.
_CHUNK = 16_384
_EPS = 1e-6


def logsumexp_rows(values: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp (rows of ``-inf`` give ``-inf``)."""
    top = values.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.asarray(np.log(np.exp(values - top[:, None]).sum(axis=1)) + top)


def log_integral(
    lo: np.ndarray, hi: np.ndarray, a: float, ea: np.ndarray, b: float, eb: float
) -> np.ndarray:
    """log of integral_lo^hi (a + t)^-ea (b + t)^-eb dt, per row (``-inf`` where empty)."""
    half = (hi - lo) / 2.0
    t = lo[:, None] + half[:, None] * (NODES[None, :] + 1.0)
    log_f = -ea[:, None] * np.log(a + t) - eb * np.log(b + t) + LOG_WEIGHTS[None, :]
    with np.errstate(divide="ignore"):
        out = logsumexp_rows(log_f) + np.log(half)
    return np.where(half > 0, out, -np.inf)


def _chunked(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    n = len(arrays[0])
    if n <= _CHUNK:
        return np.asarray(fn(*arrays))
    return np.concatenate([fn(*(a[i : i + _CHUNK] for a in arrays)) for i in range(0, n, _CHUNK)])


def pareto_prob_alive(
    params: tuple[float, float, float, float], x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """P(still alive at T | x, t_x, T) under Pareto/NBD ``(r, alpha, s, beta)``."""
    r, alpha, s, beta = params

    def one(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        t_x = np.minimum(t_x, big_t)
        rx = r + x
        alive = -rx * np.log(alpha + big_t) - s * np.log(beta + big_t)
        died = np.log(s) + log_integral(t_x, big_t, alpha, rx, beta, s + 1.0)
        return np.asarray(np.exp(alive - np.logaddexp(alive, died)))

    return _chunked(one, *(np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t)))


def pareto_expected_purchases(
    params: tuple[float, float, float, float],
    t: float,
    x: np.ndarray,
    t_x: np.ndarray,
    big_t: np.ndarray,
) -> np.ndarray:
    """E[number of purchases in (T, T + t] | x, t_x, T].

    Given alive, ``lambda ~ Gamma(r + x, alpha + T)`` and ``mu ~ Gamma(s, beta + T)``
    independently; the expected count is ``E[lambda] E[(1 - exp(-mu t)) / mu]``.
    """
    r, alpha, s, beta = params
    x, big_t = np.asarray(x, dtype=np.float64), np.asarray(big_t, dtype=np.float64)
    b = beta + big_t
    if abs(s - 1.0) < 1e-9:
        life = b * np.log1p(t / b)
    else:
        life = b / (s - 1.0) * (1.0 - np.exp((s - 1.0) * (np.log(b) - np.log(b + t))))
    return pareto_prob_alive(params, x, t_x, big_t) * (r + x) / (alpha + big_t) * life


def pareto_prob_no_purchase(
    params: tuple[float, float, float, float],
    t: float,
    x: np.ndarray,
    t_x: np.ndarray,
    big_t: np.ndarray,
) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T).

    Given alive with ``(lambda, mu)``: no purchase before death or ``t``, i.e.
    ``exp(-(lambda + mu) t) + integral_0^t mu exp(-(lambda + mu) u) du``, averaged
    over the posterior Gammas as in the likelihood.
    """
    r, alpha, s, beta = params

    def one(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        a, b = alpha + big_t, beta + big_t
        rx = r + x
        stay = rx * (np.log(a) - np.log(a + t)) + s * (np.log(b) - np.log(b + t))
        # integral_0^t (a + u)^-(r+x) (b + u)^-(s+1) du with per-row a, b: shift u.
        half = t / 2.0
        u = half * (NODES + 1.0)
        log_f = -rx[:, None] * np.log(a[:, None] + u[None, :]) - (s + 1.0) * np.log(
            b[:, None] + u[None, :]
        )
        log_int = logsumexp_rows(log_f + LOG_WEIGHTS[None, :]) + np.log(half)
        die = np.log(s) + rx * np.log(a) + s * np.log(b) + log_int
        given_alive = np.minimum(np.exp(np.logaddexp(stay, die)), 1.0)
        alive = pareto_prob_alive(params, x, t_x, big_t)
        return np.asarray((1.0 - alive) + alive * given_alive)

    return _chunked(one, *(np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t)))


def gamma_gamma_spend(
    params: tuple[float, float, float], x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """E[spend per transaction | x transactions of mean m] under Gamma-Gamma
    ``(p, q, gamma)``; the population mean where ``x == 0``."""
    p, q, gamma = params
    x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    population_mean = p * gamma / (q - 1) if q > 1 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = (gamma + m * x) * p / (p * x + q - 1)
    return np.where((x > 0) & np.isfinite(cond), cond, population_mean)


class BTYDBlend(BaseModel):
    """A fitted Pareto/NBD (+ Gamma-Gamma for value) blended with the booster's output.

    Churn: ``p = sigmoid(weight * logit(booster) + (1 - weight) * logit(P(no purchase
    in H)) + offset)``. Value: ``v = exp(weight * log(booster) + (1 - weight) *
    log(E[purchases in H] * E[spend]) + offset)``. The BTYD inputs come from the model's
    own feature columns (``frequency``: purchase days, ``recency`` and ``age``: days,
    ``monetary``: net spend), so every scoring path computes them from the same row.

    Attributes:
        kind: Always ``"paretonbd"``.
        r, alpha, s, beta: Pareto/NBD parameters (weeks).
        gg_p, gg_q, gg_gamma: Gamma-Gamma parameters (value models).
        weight: Weight of the booster in the blend, in [0, 1].
        offset: Added on the logit (churn) or log (value) scale.
        frequency, recency, age, monetary: Feature columns the BTYD inputs come from.
        season: Calendar-month index (January first, 12 positive values) when the
            Pareto/NBD was fitted in seasonally weighted time (:mod:`scoring.season`),
            else ``None`` (calendar time).
        season_as_of: The date the rows are read as summarised at, for that time
            (the scoring date the parameters were fitted for; a row summarised later
            is read with the same calendar, a shift of the difference).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["paretonbd"] = "paretonbd"
    r: float = Field(gt=0)
    alpha: float = Field(gt=0)
    s: float = Field(gt=0)
    beta: float = Field(gt=0)
    gg_p: float | None = Field(default=None, gt=0)
    gg_q: float | None = Field(default=None, gt=0)
    gg_gamma: float | None = Field(default=None, gt=0)
    weight: float = Field(ge=0, le=1)
    offset: float = 0.0
    frequency: str = "frequency_days"
    recency: str = "recency_days"
    age: str = "tenure_days"
    monetary: str = "monetary_total"
    season: tuple[float, ...] | None = None
    season_as_of: date | None = None

    @model_validator(mode="after")
    def _season_complete(self) -> BTYDBlend:
        if (self.season is None) != (self.season_as_of is None):
            raise ValueError("season and season_as_of go together (both or neither)")
        if self.season is not None and (
            len(self.season) != 12 or not all(np.isfinite(v) and v > 0 for v in self.season)
        ):
            raise ValueError("season must hold 12 positive monthly values, January first")
        return self

    @property
    def columns(self) -> list[str]:
        """The feature columns the BTYD inputs come from."""
        return [self.frequency, self.recency, self.age, self.monetary]


def blend_inputs(
    blend: BTYDBlend, feature_names: list[str], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T, mean spend)`` in weeks (seasonally weighted ones when the blend
    has a season) from model-matrix rows; missing values read as no repeat purchase,
    no age, no spend (finite for any row)."""
    col = {n: x[:, feature_names.index(n)] for n in blend.columns}
    days = np.nan_to_num(col[blend.frequency], nan=1.0)
    if blend.season is not None and blend.season_as_of is not None:
        t_x, age = seasonal_inputs(
            blend.season,
            pd.Timestamp(blend.season_as_of),
            recency_days=col[blend.recency],
            age_days=col[blend.age],
            horizon_days=0,
        )[:2]
    else:
        age = np.maximum(np.nan_to_num(col[blend.age], nan=0.0), 0.0) / 7.0
        recency = np.nan_to_num(col[blend.recency], nan=0.0) / 7.0
        t_x = np.clip(age - recency, 0.0, age)
    n_tx = np.maximum(days, 1.0)
    mean = np.maximum(np.nan_to_num(col[blend.monetary], nan=0.0), 0.0) / n_tx
    return np.maximum(days - 1.0, 0.0), t_x, age, mean


def btyd_prediction(
    blend: BTYDBlend, target: str, horizon_days: int, feature_names: list[str], x: np.ndarray
) -> np.ndarray:
    """P(no purchase in H) (churn) or expected spend in H (value) of each row."""
    rep, t_x, age, mean = blend_inputs(blend, feature_names, x)
    params = (blend.r, blend.alpha, blend.s, blend.beta)
    t = horizon_weeks(blend, horizon_days)
    if target == "churn":
        return pareto_prob_no_purchase(params, t, rep, t_x, age)
    if blend.gg_p is None or blend.gg_q is None or blend.gg_gamma is None:
        raise ValueError("A value model's BTYD blend needs Gamma-Gamma parameters.")
    spend = gamma_gamma_spend((blend.gg_p, blend.gg_q, blend.gg_gamma), rep + 1.0, mean)
    return pareto_expected_purchases(params, t, rep, t_x, age) * spend


def horizon_weeks(blend: BTYDBlend, horizon_days: int) -> float:
    """The horizon in the blend's weeks (seasonally weighted ones with a season)."""
    if blend.season is None or blend.season_as_of is None:
        return horizon_days / 7.0
    ends = operational_weeks(
        blend.season, pd.Timestamp(blend.season_as_of), np.array([float(horizon_days)])
    )
    return float(ends[0])


def blend_scores(
    target: str, weight: float, offset: float, booster: np.ndarray, btyd: np.ndarray
) -> np.ndarray:
    """The blended score (see :class:`BTYDBlend`)."""
    booster, btyd = np.asarray(booster, dtype=np.float64), np.asarray(btyd, dtype=np.float64)
    if target == "churn":
        z = weight * _logit(booster) + (1.0 - weight) * _logit(btyd) + offset
        return np.asarray(1.0 / (1.0 + np.exp(-z)))
    floor = _EPS
    logs = weight * np.log(np.maximum(booster, floor)) + (1.0 - weight) * np.log(
        np.maximum(np.nan_to_num(btyd, nan=floor), floor)
    )
    return np.asarray(np.exp(logs + offset))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.nan_to_num(p, nan=0.5), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(p) - np.log1p(-p))
