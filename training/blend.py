"""The ``blend`` candidate: the LightGBM champion blended with Pareto/NBD (+ Gamma-Gamma).

A LightGBM model learns from labelled windows that all end before the history does; on
a short purchase log (one year, a 181-day question) those windows hold younger
customers and other seasons than the customers it will score, and the Pareto/NBD
fitted on the whole history, without labels, ranks and calibrates them better. The
blend averages the two on the logit (churn) or log (value) scale:

- **weight**: the booster's share, chosen on the validation rows among
  :data:`BLEND_WEIGHTS` (0.1 to 0.9), by the target's selection metric; on a
  customer-grouped plan (``one_se``) the lowest weight within one bootstrap standard
  error of the best. Those validation rows are other customers in the very windows
  the booster learned from, a setting that flatters the booster and not the label-free
  Pareto/NBD; at the scoring date the customers are older and the season another, and
  on the purchase-log study the booster-heavy weights a 620-row slice preferred
  (0.8-0.9 on seed 2) ranked worst on the holdout;
- **parameters**: Pareto/NBD (and Gamma-Gamma for value) refitted on every customer
  with a purchase before the *scoring date* (the day after the last event), from the
  model's own feature columns, so the registered model scores the next horizon with a
  BTYD fitted on all the history;
- **seasonal time**: given the event history, the Pareto/NBD is fitted and predicted
  in seasonally weighted time (:mod:`training.season` estimates the calendar-month
  index from the history; the blend carries it, so scoring converts each row the same
  way), which reads P(alive) right after a busy or a slow season; calendar time when
  the history shows no season or that fit fails;
- **offset** (no labels): churn probabilities are shifted so their mean over those
  customers equals the Pareto/NBD's mean P(no purchase in H); value predictions are
  scaled so their total equals the Pareto/NBD + Gamma-Gamma's expected total (over a
  random :data:`MAX_POPULATION_ROWS` of those customers when there are more). The
  booster knows no calendar and has seen only labelled windows that ended before the
  history did: on the purchase-log study its total for the next six months was
  +7 to +18 % of what happened (its totals over the labelled windows swing from
  -23 % to +14 %), while the seasonal Pareto/NBD + Gamma-Gamma's was -1 to -3 %.

Validation metrics use the same recipe on the validation rows (parameters and offset
from the validation cutoff's customers). The blend is packaged in the model contract
(:class:`scoring.btyd.BTYDBlend`), so every scoring path computes it from the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score

from scoring.btyd import BTYDBlend, blend_inputs, blend_scores, btyd_prediction
from scoring.contract import ModelContract, model_matrix
from training.clv import GammaGamma
from training.errors import TrainingError
from training.evaluation import metrics_for, normalized_gini
from training.pareto_nbd import ParetoNBD
from training.scoring_date import buyers_only, scoring_date
from training.season import PurchaseDays

__all__ = [
    "BLEND_WEIGHTS",
    "BOOTSTRAP_DRAWS",
    "BOOTSTRAP_ROWS",
    "MAX_POPULATION_ROWS",
    "BTYDFits",
    "finish_blend",
    "fit_blend",
    "fit_btyd_parts",
    "scoring_date",
    "scoring_population",
    "selection_se",
]

Target = Literal["churn", "value"]
# 0 (Pareto/NBD alone) is left out: it is the paretonbd baseline, and on a small
# validation slice a tie with it is chosen as often as a real blend.
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
_SELECTION = {"churn": "auc", "value": "normalized_gini"}
# Customers of the scoring population the offset is anchored on: a random 200k pins a
# mean or a ratio of totals of smooth predictions to well under 1 %, and scoring all of
# a 1M-customer base (booster + Pareto/NBD) cost seconds of the training budget.
MAX_POPULATION_ROWS = 200_000
# The one-standard-error rule's bootstrap: 200 resamples pin a standard error to about
# 5 %; rows beyond 20k add nothing to a choice that small a slice cannot make wrong.
BOOTSTRAP_DRAWS = 200
BOOTSTRAP_ROWS = 20_000


def scoring_population(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    feature_builder: Callable[..., pd.DataFrame],
    spec: Any,
) -> pd.DataFrame:
    """Features at the day after the last event of every customer with a purchase."""
    feats = feature_builder(customers, events, as_of=scoring_date(events), spec=spec)
    return buyers_only(feats)


def _fit_btyd(
    blend: BTYDBlend,
    target: Target,
    names: list[str],
    x: np.ndarray,
    seed: int,
    start: BTYDBlend | None = None,
) -> BTYDBlend:
    rep, t_x, age, mean = blend_inputs(blend, names, x)
    # The fit at the validation cutoff starts the one at the scoring date (same
    # customers a few months on): fewer optimiser steps to the same maximum.
    origin = None if start is None else (start.r, start.alpha, start.s, start.beta)
    pn = ParetoNBD().fit(rep, t_x, age, seed=seed, start=origin)
    update: dict[str, float] = {"r": pn.r, "alpha": pn.alpha, "s": pn.s, "beta": pn.beta}
    if target == "value":
        gg = GammaGamma().fit(rep + 1.0, mean, seed=seed)
        update |= {"gg_p": gg.p, "gg_q": gg.q, "gg_gamma": gg.gamma}
    return blend.model_copy(update=update)


def _seasonal_btyd(
    template: BTYDBlend,
    target: Target,
    names: list[str],
    x: np.ndarray,
    *,
    history: PurchaseDays | None,
    as_of: pd.Timestamp,
    seed: int,
) -> BTYDBlend:
    """The BTYD fitted on rows ``x`` summarised at ``as_of``: in seasonally weighted
    time when the purchases before ``as_of`` in ``history`` show a season, else in
    calendar time.

    Raises:
        TrainingError: The calendar-time fit fails (a failing seasonal fit falls back).
    """
    if history is None:
        return _fit_btyd(template, target, names, x, seed)
    index = history.index(as_of, seed=seed)
    if np.allclose(index, 1.0):
        return _fit_btyd(template, target, names, x, seed)
    season = {"season": tuple(float(v) for v in index), "season_as_of": as_of.date()}
    try:
        return _fit_btyd(template.model_copy(update=season), target, names, x, seed)
    except TrainingError:
        return _fit_btyd(template, target, names, x, seed)


def _offset(target: Target, weight: float, raw: np.ndarray, btyd: np.ndarray) -> float:
    """Churn: mean blended probability = mean BTYD probability; value: total = BTYD's."""
    if len(raw) == 0:
        return 0.0
    if target == "value":
        total = float(blend_scores(target, weight, 0.0, raw, btyd).sum())
        goal = float(np.nansum(btyd))
        return float(np.log(max(goal, 1e-9) / max(total, 1e-9)))
    goal = float(np.mean(btyd))
    # The offset only shifts the logit: blend once, then each root-finding step is one
    # sigmoid over the rows (not two clipped logits of every row per step).
    p0 = blend_scores(target, weight, 0.0, raw, btyd)
    z0 = np.log(p0) - np.log1p(-p0)

    def gap(b: float) -> float:
        return float(special.expit(z0 + b).mean()) - goal

    return float(brentq(gap, -20.0, 20.0)) if gap(-20.0) < 0 < gap(20.0) else 0.0


def selection_se(target: Target, y: np.ndarray, scores: np.ndarray, *, seed: int) -> float:
    """Bootstrap standard error of the selection metric (churn AUC, value normalised
    Gini) over the rows (:data:`BOOTSTRAP_DRAWS` resamples of at most
    :data:`BOOTSTRAP_ROWS` rows)."""
    rng = np.random.default_rng(seed)
    n = min(len(y), BOOTSTRAP_ROWS)
    if n < 2:
        return 0.0
    values = []
    for _ in range(BOOTSTRAP_DRAWS):
        pick = rng.integers(0, len(y), n)
        yb = y[pick]
        if target == "churn":
            if yb.min() == yb.max():
                continue
            values.append(float(roc_auc_score(yb, scores[pick])))
        else:
            values.append(normalized_gini(yb, scores[pick]))
    return float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0


def _choose_weight(
    target: Target,
    y: np.ndarray,
    raw: np.ndarray,
    btyd: np.ndarray,
    *,
    one_se: bool,
    seed: int,
) -> tuple[float, float]:
    """The booster's weight and the standard error of its selection metric (0 without
    ``one_se``): the best weight on the validation rows, or with ``one_se`` the lowest
    whose metric is within one bootstrap standard error of the best."""
    metric = _SELECTION[target]
    values = [
        metrics_for(target, y, blend_scores(target, w, 0.0, raw, btyd))[metric]
        for w in BLEND_WEIGHTS
    ]
    top = int(np.nanargmax(values))
    if not one_se:
        return BLEND_WEIGHTS[top], 0.0
    best_scores = blend_scores(target, BLEND_WEIGHTS[top], 0.0, raw, btyd)
    se = selection_se(target, y, best_scores, seed=seed)
    pick = next(i for i, v in enumerate(values) if v >= values[top] - se)
    return BLEND_WEIGHTS[pick], se


@dataclass
class BTYDFits:
    """The blend's Pareto/NBD (+ Gamma-Gamma) fits, which need no booster: made by
    :func:`fit_btyd_parts` while LightGBM trains, finished by :func:`finish_blend`.

    Attributes:
        x_val: The validation rows' model matrix.
        x_now: The scoring population's model matrix (a sample of it, see
            :data:`MAX_POPULATION_ROWS`).
        at_val: The BTYD fitted at the validation cutoff (validation metrics).
        now: The BTYD fitted at the scoring date (what the contract carries).
    """

    x_val: np.ndarray
    x_now: np.ndarray
    at_val: BTYDBlend
    now: BTYDBlend


def fit_btyd_parts(
    target: Target,
    contract: ModelContract,
    *,
    validation: pd.DataFrame,
    population: Callable[[], pd.DataFrame],
    seed: int = 0,
    events: pd.DataFrame | None = None,
    x_val: np.ndarray | None = None,
) -> BTYDFits | None:
    """Everything of the blend that does not need the booster (see :func:`fit_blend`);
    ``None`` when the features lack the BTYD columns, there are fewer than 50
    validation rows, or a BTYD fit fails. ``x_val`` is the validation rows' model
    matrix when the caller has it already.
    """
    template = BTYDBlend(r=1.0, alpha=1.0, s=1.0, beta=1.0, weight=1.0)
    names = contract.feature_names
    if any(c not in names for c in template.columns) or len(validation) < 50:
        return None
    now_rows = population()
    if len(now_rows) > MAX_POPULATION_ROWS:
        pick = np.random.default_rng(seed).choice(len(now_rows), MAX_POPULATION_ROWS, replace=False)
        now_rows = now_rows.take(np.sort(pick))
    x_now = model_matrix(now_rows, contract)
    del now_rows
    if x_val is None:
        x_val = model_matrix(validation, contract)
    val_as_of = (
        pd.Timestamp(contract.validation_cutoffs[0], tz="UTC")
        if contract.validation_cutoffs
        else None
    )
    # The scoring date is the day after the last event of any type.
    now_as_of = scoring_date(events) if events is not None else pd.Timestamp(0, tz="UTC")
    # Both seasonal indexes read the purchases: reduced once to (customer code, day),
    # not filtered, copied and hashed by customer id at each date.
    history = PurchaseDays(events) if events is not None else None
    try:
        now = _seasonal_btyd(
            template, target, names, x_now, history=history, as_of=now_as_of, seed=seed
        )
        at_val = _seasonal_btyd(
            template,
            target,
            names,
            x_val,
            history=history if val_as_of is not None else None,
            as_of=val_as_of or now_as_of,
            seed=seed,
        )
    except TrainingError:
        return None
    return BTYDFits(x_val=x_val, x_now=x_now, at_val=at_val, now=now)


def finish_blend(
    target: Target,
    booster: Any,
    contract: ModelContract,
    fits: BTYDFits,
    *,
    y_val: np.ndarray,
    seed: int = 0,
    one_se: bool = False,
    raw_val: np.ndarray | None = None,
) -> tuple[BTYDBlend, dict[str, float], float]:
    """The booster's weight and the offsets on top of ``fits`` (see :func:`fit_blend`).

    ``raw_val`` is the booster's raw outputs on the validation rows when the caller
    has them (predicting them again costs seconds at a million customers).
    """
    names, h = contract.feature_names, contract.horizon_days
    if raw_val is None or len(raw_val) != len(fits.x_val):
        raw_val = booster.predict(fits.x_val)
    raw_val = np.asarray(raw_val, dtype=np.float64)
    btyd_val = btyd_prediction(fits.at_val, target, h, names, fits.x_val)
    best, se = _choose_weight(target, y_val, raw_val, btyd_val, one_se=one_se, seed=seed)
    val_scores = blend_scores(
        target, best, _offset(target, best, raw_val, btyd_val), raw_val, btyd_val
    )
    raw_now = np.asarray(booster.predict(fits.x_now), dtype=np.float64)
    btyd_now = btyd_prediction(fits.now, target, h, names, fits.x_now)
    blend = fits.now.model_copy(
        update={"weight": best, "offset": _offset(target, best, raw_now, btyd_now)}
    )
    return blend, metrics_for(target, y_val, val_scores), se


def fit_blend(
    target: Target,
    booster: Any,
    contract: ModelContract,
    *,
    validation: pd.DataFrame,
    population: Callable[[], pd.DataFrame],
    seed: int = 0,
    events: pd.DataFrame | None = None,
    one_se: bool = False,
) -> tuple[BTYDBlend, dict[str, float], float] | None:
    """The blend of ``booster`` (raw outputs) with a Pareto/NBD, its validation
    metrics and the bootstrap standard error of its selection metric (0 without
    ``one_se``); ``None`` when the features lack the BTYD columns or rows to fit on.
    With ``one_se`` the weight follows the one-standard-error rule
    (``_choose_weight``).
    ``population()`` gives the features of the customers to score next (called only
    when the blend can be fitted), summarised at :func:`scoring_date` of ``events``;
    with ``events`` (the history), the Pareto/NBD is seasonal (the validation rows'
    index from the history before the validation cutoff).

    The same as :func:`fit_btyd_parts` then :func:`finish_blend`; training calls the
    two apart, the first while LightGBM trains.

    Raises:
        TrainingError: Only from the BTYD fits' own checks (caught: returns ``None``).
    """
    fits = fit_btyd_parts(
        target, contract, validation=validation, population=population, seed=seed, events=events
    )
    if fits is None:
        return None
    y_val = validation[target].to_numpy(dtype=np.float64)
    return finish_blend(target, booster, contract, fits, y_val=y_val, seed=seed, one_se=one_se)
