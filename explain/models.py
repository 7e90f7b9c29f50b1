"""Why a model gave its score: per-customer contributions that add up to the raw score.

* LightGBM boosters: SHAP values from ``Booster.predict(pred_contrib=True)``: one
  contribution per input plus the expected value (the base), on the raw scale (log-odds
  for churn, the link scale for value models); base + contributions equals
  ``Booster.predict(raw_score=True)``.
* Linear models (``coef_`` and ``intercept_``, e.g. a baseline that won a contest):
  their own decomposition, ``coef_j * x_j`` with the intercept as the base.

The score the customer sees is the raw score through the model's link and the
contract's calibration; the reasons are the largest contributions, in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from explain.errors import ExplainError
from explain.profile import plain
from explain.words import FeatureWords
from scoring.contract import ModelContract, calibrate, model_matrix

__all__ = [
    "FrameRows",
    "ModelReasons",
    "Reason",
    "contributions",
    "explain_model",
    "explain_row",
    "row_matrix",
]

TOP = 5


@dataclass(frozen=True)
class Reason:
    """One input's share of the raw score.

    Attributes:
        feature: The input.
        value: Its value for the customer.
        contribution: What it adds to the raw score (negative: lowers it).
        words: The value in plain words.
    """

    feature: str
    value: Any
    contribution: float
    words: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "words": self.words,
        }


@dataclass(frozen=True)
class ModelReasons:
    """The top reasons behind one customer's model score.

    Attributes:
        model: Registered model name.
        version: Model version (the one that produced the stored value).
        method: ``shap`` (LightGBM ``pred_contrib``) or ``linear`` (coefficient x value).
        scale: What the raw score is (``log-odds``, ``link``, ``raw``).
        base: The base value (expected raw score, or the intercept).
        raw: The model's raw score for the customer: ``base + sum(contributions)``.
        score: The calibrated score, as stored and served.
        reasons: The largest contributions, largest first.
        rest: The sum of every other input's contribution.
        inputs: Every input of the model (what the explanation may reveal).
        stored_score: The score in the tag store (``None``: not compared).
    """

    model: str
    version: str
    method: str
    scale: str
    base: float
    raw: float
    score: float
    reasons: tuple[Reason, ...]
    rest: float
    inputs: tuple[str, ...]
    stored_score: float | None = None

    @property
    def consistent(self) -> bool:
        """Whether the recomputed score equals the stored one (within 1e-6)."""
        if self.stored_score is None:
            return True
        return math.isclose(self.score, self.stored_score, rel_tol=0, abs_tol=1e-6)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.model,
            "version": self.version,
            "method": self.method,
            "scale": self.scale,
            "base": self.base,
            "raw": self.raw,
            "score": self.score,
            "reasons": [r.to_json() for r in self.reasons],
            "rest": self.rest,
            "consistent": self.consistent,
        }

    def lines(self) -> list[str]:
        """The reasons as text lines."""
        head = (
            f"{self.model}/{self.version}: base {self.base:+.3f} + reasons = raw "
            f"{self.raw:+.3f} ({self.scale}) -> score {self.score:.4g}"
        )
        out = [head]
        out += [f"{r.contribution:+.3f}  {r.words}" for r in self.reasons]
        out.append(f"{self.rest:+.3f}  the {len(self.inputs) - len(self.reasons)} other inputs")
        if not self.consistent:
            out.append(
                f"note: recomputed score {self.score:.6g} differs from the stored "
                f"{self.stored_score:.6g}: facts changed since the run"
            )
        return out

    def feature_names(self) -> set[str]:
        """The features the reasons quote."""
        return {r.feature for r in self.reasons}


def row_matrix(row: pd.DataFrame, contract: ModelContract) -> np.ndarray:
    """:func:`scoring.contract.model_matrix` of one row, without per-column pandas work.

    The row is read once as Python values (numbers and booleans as floats, missing as
    NaN, categoricals as the index of their level); anything else falls back to
    ``model_matrix`` itself, so the two always agree (a test checks every row).
    """
    values = row.iloc[0].to_dict()
    out = np.empty((1, len(contract.feature_names)), dtype=np.float64)
    levels = contract.categorical_levels
    lookups = _lookups(contract)
    for j, name in enumerate(contract.feature_names):
        if name not in values:
            return model_matrix(row, contract)
        value = values[name]
        if name in levels:
            out[0, j] = np.nan if _missing(value) else lookups[name].get(str(value), np.nan)
        elif _missing(value):
            out[0, j] = np.nan
        elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            out[0, j] = float(value)
        else:
            return model_matrix(row, contract)
    return out


_LOOKUPS: dict[int, tuple[ModelContract, dict[str, dict[str, int]]]] = {}


def _lookups(contract: ModelContract) -> dict[str, dict[str, int]]:
    cached = _LOOKUPS.get(id(contract))
    if cached is None or cached[0] is not contract:
        table = {
            n: {v: i for i, v in enumerate(lv)} for n, lv in contract.categorical_levels.items()
        }
        if len(_LOOKUPS) > 32:
            _LOOKUPS.clear()
        cached = (contract, table)
        _LOOKUPS[id(contract)] = cached
    return cached[1]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _is_booster(model: Any) -> bool:
    booster = getattr(model, "booster_", model)
    return callable(getattr(booster, "predict", None)) and hasattr(booster, "dump_model")


def contributions(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(base per row, contributions rows x inputs, method) of ``model`` on matrix ``x``.

    Raises:
        ExplainError: The model is neither a LightGBM booster nor linear.
    """
    if _is_booster(model):
        booster = getattr(model, "booster_", model)
        out = np.asarray(booster.predict(x, pred_contrib=True, num_threads=1), dtype=np.float64)
        if out.shape[1] != x.shape[1] + 1:
            raise ExplainError(
                f"Expected one contribution per input plus the base ({x.shape[1] + 1} columns). "
                f"Got {out.shape[1]}: multi-class models are not explained."
            )
        return out[:, -1], out[:, :-1], "shap"
    coef = getattr(model, "coef_", None)
    if coef is not None:
        weights = np.asarray(coef, dtype=np.float64).reshape(-1)
        if len(weights) != x.shape[1]:
            raise ExplainError(
                f"Expected {x.shape[1]} coefficients, one per input. Got {len(weights)}."
            )
        intercept = float(np.asarray(getattr(model, "intercept_", 0.0)).reshape(-1)[0])
        filled = np.where(np.isnan(x), 0.0, x)
        return np.full(len(x), intercept), filled * weights, "linear"
    raise ExplainError(
        f"Expected a LightGBM model or a linear model (coef_, intercept_). Got "
        f"{type(model).__name__}, which has no decomposition."
    )


_IDENTITY_OBJECTIVES = frozenset(
    {
        "regression",
        "regression_l2",
        "l2",
        "mean_squared_error",
        "mse",
        "l2_root",
        "rmse",
        "root_mean_squared_error",
        "regression_l1",
        "l1",
        "mean_absolute_error",
        "mae",
        "huber",
        "fair",
        "quantile",
        "mape",
        "mean_absolute_percentage_error",
    }
)


def _inverse_link(booster: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """What LightGBM applies to the raw score for ``booster``'s objective; None when not
    known here (the caller then asks the booster)."""
    objective = str(getattr(booster, "params", {}).get("objective", ""))
    if objective in ("binary", "cross_entropy", "xentropy"):
        scale = (
            float(getattr(booster, "params", {}).get("sigmoid", 1.0))
            if objective == "binary"
            else 1.0
        )
        return lambda raw: 1.0 / (1.0 + np.exp(-scale * raw))
    if objective in ("poisson", "tweedie", "gamma"):
        return np.exp
    if objective in _IDENTITY_OBJECTIVES:
        return lambda raw: raw
    return None


def _scale(model: Any, method: str) -> str:
    if method == "linear":
        return "raw"
    booster = getattr(model, "booster_", model)
    objective = str(getattr(booster, "params", {}).get("objective", ""))
    if objective.startswith(("binary", "cross_entropy")):
        return "log-odds"
    if objective in ("poisson", "tweedie", "gamma"):
        return "log"
    return "link"


def _value(row: pd.Series, name: str) -> Any:
    return plain(row[name]) if name in row.index else None


def explain_model(
    model: Any,
    contract: ModelContract,
    row: pd.DataFrame,
    *,
    name: str,
    version: str,
    words: FeatureWords,
    top: int = TOP,
    stored_score: float | None = None,
) -> ModelReasons:
    """The top reasons of ``model`` (with ``contract``) for the one-row frame ``row``.

    Raises:
        ExplainError: ``row`` is not one row, or the model has no decomposition.
    """
    if len(row) != 1:
        raise ExplainError(f"Expected one feature row to explain. Got {len(row)}.")
    first = row.iloc[0]
    return explain_row(
        model,
        row_matrix(row, contract),
        contract,
        lambda n: _value(first, n),
        name=name,
        version=version,
        words=words,
        top=top,
        stored_score=stored_score,
    )


def explain_row(
    model: Any,
    x: np.ndarray,
    contract: ModelContract,
    value_of: Callable[[str], Any],
    *,
    name: str,
    version: str,
    words: FeatureWords,
    top: int = TOP,
    stored_score: float | None = None,
) -> ModelReasons:
    """:func:`explain_model` of a prepared one-row model matrix ``x``.

    ``value_of(feature)`` gives the plain value a reason quotes (``None``: unknown).

    Raises:
        ExplainError: The model has no decomposition.
    """
    base, contrib, method = contributions(model, x)
    parts = contrib[0]
    raw = float(base[0] + parts.sum())
    if method == "shap":
        booster = getattr(model, "booster_", model)
        link = _inverse_link(booster)
        if link is None:
            prob = np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)
        else:  # the prediction is the link of base + contributions: no second predict
            prob = link(np.array([raw]))
        score = float(calibrate(prob, contract, x)[0])
    else:
        score = float(calibrate(np.array([raw]), contract, x)[0])
    order = np.argsort(-np.abs(parts), kind="stable")[:top]
    context = {n: value_of(n) for n in ("gap_mean_days",)}
    reasons = tuple(
        Reason(
            feature=contract.feature_names[j],
            value=value_of(contract.feature_names[j]),
            contribution=float(parts[j]),
            words=words.describe(
                contract.feature_names[j], value_of(contract.feature_names[j]), context
            ),
        )
        for j in order
        if abs(parts[j]) >= 5e-4  # below the shown precision: left to "the other inputs"
    )
    rest = float(parts.sum() - sum(r.contribution for r in reasons))
    return ModelReasons(
        model=name,
        version=version,
        method=method,
        scale=_scale(model, method),
        base=float(base[0]),
        raw=raw,
        score=score,
        reasons=reasons,
        rest=rest,
        inputs=tuple(contract.feature_names),
        stored_score=stored_score,
    )


class FrameRows:
    """Model matrices and quoted values of single rows of a large frame, without pandas
    per row (a service explaining one customer of its snapshot per request).

    ``frame.iloc[pos : pos + 1]`` then :func:`row_matrix` costs a pandas slice and a
    row read across every column, a few milliseconds at a hundred features; here each
    column's array is taken once (numpy columns as they are, categoricals as codes with
    each contract's level index per code) and a row is one item per input. Columns of
    any other kind fall back to :func:`row_matrix` on the pandas row, so the matrix is
    always the one :func:`row_matrix` gives (a test checks every row).

    Args:
        frame: One row per customer, with a default integer index.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._numbers: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, Any]] = {}
        self._text = {str(c) for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)}
        for column in frame.columns:
            series = frame[column]
            if isinstance(series.dtype, pd.CategoricalDtype):
                self._codes[str(column)] = (series.cat.codes.to_numpy(), series.cat.categories)
            elif isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
                self._numbers[str(column)] = series.to_numpy()
        self._plans: dict[int, tuple[ModelContract, list[Any] | None]] = {}

    def _coded(self, name: str) -> tuple[np.ndarray, Any] | None:
        """Codes (-1: missing) and their values of a categorical or text column; text
        columns are factorised on first use (only those a contract codes as levels)."""
        found = self._codes.get(name)
        if found is None and name in self._text:
            codes, uniques = pd.factorize(self.frame[name], use_na_sentinel=True)
            found = (np.asarray(codes), uniques)
            self._codes[name] = found
        return found

    def _plan(self, contract: ModelContract) -> list[Any] | None:
        """Per input: its number array, or (codes, level index per code); ``None`` when
        an input is of another kind (then the pandas row is read)."""
        cached = self._plans.get(id(contract))
        if cached is not None and cached[0] is contract:
            return cached[1]
        lookups = _lookups(contract)
        steps: list[Any] = []
        plan: list[Any] | None = steps
        for name in contract.feature_names:
            coded = self._coded(name) if name in contract.categorical_levels else None
            if coded is not None:
                codes, categories = coded
                lookup = lookups[name]
                # Code -1 (missing) reads the last entry: NaN.
                levels = [lookup.get(str(c), np.nan) for c in categories] + [np.nan]
                steps.append((codes, np.asarray(levels, dtype=np.float64)))
            elif name not in contract.categorical_levels and name in self._numbers:
                steps.append(self._numbers[name])
            else:
                plan = None
                break
        self._plans[id(contract)] = (contract, plan)
        return plan

    def matrix(self, pos: int, contract: ModelContract) -> np.ndarray:
        """:func:`row_matrix` of row ``pos``."""
        plan = self._plan(contract)
        if plan is None:
            return row_matrix(self.frame.iloc[pos : pos + 1], contract)
        out = np.empty((1, len(plan)), dtype=np.float64)
        for j, source in enumerate(plan):
            if isinstance(source, tuple):
                out[0, j] = source[1][source[0][pos]]
            else:
                out[0, j] = source[pos]
        return out

    def value(self, name: str, pos: int) -> Any:
        """The plain value of feature ``name`` in row ``pos`` (``None``: no such column).

        The value ``plain(frame[name].iat[pos])`` gives, read from the column's array
        (a pandas column read costs more than the rest of a value's work).
        """
        numbers = self._numbers.get(name)
        if numbers is not None:  # what .iat gives: the array's own scalar
            return plain(numbers[pos])
        coded = self._coded(name)
        if coded is not None:
            code = int(coded[0][pos])
            return None if code < 0 else plain(coded[1][code])
        if name not in self.frame.columns:
            return None
        return plain(self.frame[name].iat[pos])
