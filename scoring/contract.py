"""The model contract: how a feature frame becomes a model's input and score.

Training, batch tagging and the HTTP service all score through this module, so the
same customer gets the same number everywhere. A trained model carries its
:class:`ModelContract` in the ``metadata`` of its MLflow model (``MLmodel`` file):
the ordered feature names, the levels of each categorical column (encoded as integer
codes; an unseen or missing level becomes NaN, which LightGBM treats as missing), the
probability calibration learnt on the time-based validation slice, and the label
semantics (target, horizon) and lineage (feature spec hash, facts fingerprint,
cutoffs) it was trained with.

Typical use (loading lives in :mod:`scoring.loading`)::

    model = load_model("models:/churn-predictor@champion")
    scores = model.score(features_df)          # calibrated, one per row
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.column_blocks import ColumnBlocks, block_matrix_plan, fill_matrix
from features.errors import SchemaError
from features.small_events import category_strings
from scoring.btyd import BTYDBlend, blend_scores, btyd_prediction

__all__ = [
    "CONTRACT_METADATA_KEY",
    "CONTRACT_VERSION",
    "REGISTERED_MODEL_NAMES",
    "Calibration",
    "IsotonicCalibration",
    "ModelContract",
    "PlattCalibration",
    "calibrate",
    "categorical_levels_of",
    "contract_from_metadata",
    "contract_metadata",
    "model_matrix",
    "predict_raw",
    "score_frame",
]

CONTRACT_METADATA_KEY = "tagsmith_contract"
# Registered model names: with this contract, the only link between training and serving.
REGISTERED_MODEL_NAMES: dict[str, str] = {"churn": "churn-predictor", "value": "value-predictor"}
CONTRACT_VERSION = 1


class IsotonicCalibration(BaseModel):
    """Monotone piecewise-linear map from raw score to probability.

    Between knots the map is linear, outside it is flat (as sklearn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts).

    Attributes:
        kind: Always ``"isotonic"``.
        x: Raw-score knots, non-decreasing.
        y: Calibrated value at each knot, non-decreasing, in [0, 1].
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["isotonic"] = "isotonic"
    x: list[float]
    y: list[float]

    @model_validator(mode="after")
    def _knots_are_monotone(self) -> IsotonicCalibration:
        if len(self.x) != len(self.y) or len(self.x) < 1:
            raise ValueError(
                f"isotonic knots need equally many x and y (>= 1), got {len(self.x)} x "
                f"and {len(self.y)} y"
            )
        if not (_finite(self.x) and _finite(self.y)):
            raise ValueError("isotonic knots must be finite numbers")
        if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < 0):
            raise ValueError("isotonic knots must be non-decreasing in x and in y")
        return self


class PlattCalibration(BaseModel):
    """Logistic map on the raw score's log-odds: ``p = 1 / (1 + exp(a * logit(raw) + b))``.

    Attributes:
        kind: Always ``"platt"``.
        a: Slope (negative for an increasing map).
        b: Intercept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["platt"] = "platt"
    a: float
    b: float


Calibration = Annotated[IsotonicCalibration | PlattCalibration, Field(discriminator="kind")]


class ModelContract(BaseModel):
    """Everything needed to turn a feature frame into this model's scores, and its lineage.

    Attributes:
        contract_version: Format version of this contract.
        target: ``churn`` (score = P(no purchase in the horizon)) or ``value``
            (score = expected net purchase amount in the horizon).
        horizon_days: Length of the label horizon H in days.
        feature_names: Model input columns, in matrix order.
        categorical_levels: For each categorical input, its levels; the code of a
            value is its index here.
        calibration: Map from raw model output to the score, or ``None``.
        spec_hash: Hash of the feature spec the features were built with.
        facts_fingerprint: Fingerprint of the fact store trained on ("" if unknown).
        train_cutoffs: Cutoffs whose labelled rows trained the model.
        validation_cutoffs: Later cutoffs used for selection and calibration.
        blend: A Pareto/NBD (+ Gamma-Gamma) blended with the booster's output before
            calibration (the ``blend`` candidate), or ``None``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract_version: int = CONTRACT_VERSION
    target: Literal["churn", "value"]
    horizon_days: int = Field(ge=1)
    feature_names: list[str] = Field(min_length=1)
    categorical_levels: dict[str, list[str]] = Field(default_factory=dict)
    calibration: Calibration | None = None
    spec_hash: str = ""
    facts_fingerprint: str = ""
    train_cutoffs: list[date] = Field(default_factory=list)
    validation_cutoffs: list[date] = Field(default_factory=list)
    blend: BTYDBlend | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelContract:
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"feature names must be unique, got {self.feature_names}")
        unknown = sorted(set(self.categorical_levels) - set(self.feature_names))
        if unknown:
            raise ValueError(f"categorical columns {unknown} are not among the feature names")
        if self.blend is not None:
            missing = [c for c in self.blend.columns if c not in self.feature_names]
            if missing:
                raise ValueError(f"the BTYD blend's columns {missing} are not model inputs")
            if self.target == "value" and self.blend.gg_p is None:
                raise ValueError("a value model's BTYD blend needs Gamma-Gamma parameters")
        if self.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"contract_version must be {CONTRACT_VERSION}, got {self.contract_version}"
            )
        return self

    @property
    def categorical_indices(self) -> list[int]:
        """Matrix column indices of the categorical inputs (for LightGBM)."""
        return [i for i, n in enumerate(self.feature_names) if n in self.categorical_levels]


def categorical_levels_of(features: pd.DataFrame, names: list[str]) -> dict[str, list[str]]:
    """Levels of each string/categorical column among ``names``, sorted, nulls excluded.

    What training stores in the contract; numeric and boolean columns are not listed.
    """
    levels: dict[str, list[str]] = {}
    for name in names:
        col = features[name]
        if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
            if pd.api.types.is_bool_dtype(col):
                continue
            values = col.dropna().astype(str).unique().tolist()
            levels[name] = sorted(values)
    return levels


def model_matrix(features: pd.DataFrame, contract: ModelContract) -> np.ndarray:
    """The float64 input matrix of ``features`` for a model with ``contract``.

    Columns follow ``contract.feature_names``. Numbers and booleans become floats
    (missing -> NaN); categoricals become the index of their level in
    ``contract.categorical_levels`` (unknown or missing -> NaN).

    Raises:
        SchemaError: A feature the contract needs is absent from ``features``.
    """
    missing = [n for n in contract.feature_names if n not in features.columns]
    if missing:
        raise SchemaError(
            f"Expected the feature frame to hold every model input {missing[:10]} "
            f"(model target {contract.target!r}, spec {contract.spec_hash or 'unknown'}). "
            "Got a frame without them: rebuild features with the spec the model was "
            "trained on."
        )
    out = np.empty((len(features), len(contract.feature_names)), dtype=np.float64)
    positions = _positions(tuple(features.columns), tuple(contract.feature_names))
    for j, name in enumerate(contract.feature_names):
        levels = contract.categorical_levels.get(name)
        # Plain numpy and categorical columns are read without building a Series: a
        # live request scores one row, where per-column pandas overhead is the cost.
        values = _column_values(features, int(positions[j])) if positions is not None else None
        if levels is not None:
            if isinstance(values, pd.Categorical):
                out[:, j] = _category_level_codes(values, tuple(levels))
            elif isinstance(values, pd.arrays.ArrowStringArray):
                codes = pc.index_in(pa.array(values), value_set=_levels_arrow(tuple(levels)))
                out[:, j] = codes.to_numpy(zero_copy_only=False).astype(np.float64)  # null: NaN
            else:
                index = pd.Index(features[name].astype("string"))
                codes = _levels_index(tuple(levels)).get_indexer(index)
                out[:, j] = np.where(codes < 0, np.nan, codes)
        elif isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
            out[:, j] = values
        else:
            out[:, j] = _as_float(features[name], name)
    return out


def columns_matrix(
    columns: Mapping[str, Any],
    n: int,
    contract: ModelContract,
    blocks: ColumnBlocks | None = None,
) -> np.ndarray:
    """:func:`model_matrix` of feature arrays (the live path: no frame).

    ``columns`` maps feature names to numpy arrays, category codes (objects with
    ``codes`` and ``categories``, as the feature families give them) or Arrow text;
    the encoding is :func:`model_matrix`'s. ``blocks``, when the numeric arrays of
    ``columns`` are their rows (``CutoffColumns.blocks``), gives the numeric inputs
    with one fancy index per dtype instead of one array per input.

    Raises:
        SchemaError: A feature the contract needs is absent, or not numbers.
    """
    plan = matrix_plan(contract)
    missing = [name for name in contract.feature_names if name not in columns]
    if missing:
        raise SchemaError(
            f"Expected the features to hold every model input {missing[:10]} "
            f"(model target {contract.target!r}, spec {contract.spec_hash or 'unknown'}). "
            "Got features without them: score with the spec the model was trained on."
        )
    out = np.empty((n, len(contract.feature_names)), dtype=np.float64)
    from_blocks = (
        None
        if blocks is None
        else block_matrix_plan(blocks.layout, plan.numeric_names, plan.numeric_positions)
    )
    if from_blocks is not None and blocks is not None:
        fill_matrix(out, blocks, from_blocks)
        numbers = []
    else:
        numbers = [columns[name] for name in plan.numeric_names]
    if not all(isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for v in numbers):
        bad = next(
            name
            for name, v in zip(plan.numeric_names, numbers, strict=True)
            if not (isinstance(v, np.ndarray) and v.dtype.kind in "fiub")
        )
        raise SchemaError(
            f"Expected model input {bad!r} to be numeric or boolean (or declared "
            f"categorical in the contract). Got {type(columns[bad]).__name__} values."
        )
    if numbers:  # one stacking call instead of a column assignment per feature
        out[:, plan.numeric_positions] = np.stack(numbers, axis=1)
    for j, name, levels in plan.categorical:
        values = columns[name]
        codes = getattr(values, "codes", None)
        if codes is not None:
            out[:, j] = _level_map(levels, category_strings(values.categories))[codes]
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            out[:, j] = _text_levels(values, levels)
        else:
            raise SchemaError(
                f"Expected model input {name!r} to be category codes or text (declared "
                f"categorical in the contract). Got {type(values).__name__} values."
            )
    return out


@dataclass(frozen=True)
class MatrixPlan:
    """Where each input of a contract goes in the matrix (computed once per contract).

    Attributes:
        key: Equal for contracts with the same inputs and levels (same matrix).
        numeric_names: Inputs read as numbers, in matrix order.
        numeric_positions: Their matrix columns.
        categorical: (matrix column, name, levels) of each categorical input.
    """

    key: tuple[Any, ...]
    numeric_names: list[str]
    numeric_positions: np.ndarray
    categorical: list[tuple[int, str, tuple[str, ...]]]


_PLANS: dict[int, tuple[ModelContract, MatrixPlan]] = {}


def matrix_plan(contract: ModelContract) -> MatrixPlan:
    """The contract's :class:`MatrixPlan` (kept per contract object: contracts are frozen)."""
    found = _PLANS.get(id(contract))
    if found is None or found[0] is not contract:
        names = contract.feature_names
        levels = contract.categorical_levels
        numeric = [j for j, name in enumerate(names) if name not in levels]
        plan = MatrixPlan(
            key=(tuple(names), tuple((k, tuple(v)) for k, v in sorted(levels.items()))),
            numeric_names=[names[j] for j in numeric],
            numeric_positions=np.asarray(numeric, dtype=np.int64),
            categorical=[(j, n, tuple(levels[n])) for j, n in enumerate(names) if n in levels],
        )
        if len(_PLANS) >= 256:
            _PLANS.clear()
        found = (contract, plan)
        _PLANS[id(contract)] = found
    return found[1]


@functools.lru_cache(maxsize=256)
def _level_positions(levels: tuple[str, ...]) -> dict[str, float]:
    return {level: float(k) for k, level in enumerate(levels)}


# Above this many rows a text input is looked up by an Arrow kernel, not a Python loop.
_FEW_ROWS = 64


def _text_levels(values: pa.Array | pa.ChunkedArray, levels: tuple[str, ...]) -> Any:
    """Level position per row of a text input (NaN: missing or not a level).

    A few rows (a ``/score`` call) are looked up in a dict; many (a live micro-batch's
    customers) with one Arrow lookup instead of a Python loop over every row. Levels
    are distinct (the contract's category levels), so both give the same position.
    """
    kind = values.type
    if len(values) <= _FEW_ROWS or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        position = _level_positions(levels)
        return [position.get(v, np.nan) for v in values.to_pylist()]
    found = pc.index_in(values, value_set=pa.array(list(levels), kind))
    return pc.fill_null(found.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _column_values(features: pd.DataFrame, position: int) -> Any:
    """The array behind one column (no Series built); ``None`` if pandas hides it."""
    try:
        return features._mgr.iget_values(position)
    except AttributeError:  # a pandas without this internal accessor: the slow path
        return None


@functools.lru_cache(maxsize=64)
def _positions(columns: tuple[Any, ...], names: tuple[str, ...]) -> np.ndarray | None:
    """Position of each name among ``columns`` (``None`` when names repeat there)."""
    index = pd.Index(list(columns))
    return index.get_indexer(list(names)) if index.is_unique else None


@functools.lru_cache(maxsize=256)
def _levels_arrow(levels: tuple[str, ...]) -> pa.Array:
    return pa.array(list(levels), pa.large_string())


@functools.lru_cache(maxsize=256)
def _levels_index(levels: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(levels), dtype="string")


def _category_level_codes(values: pd.Categorical, levels: tuple[str, ...]) -> np.ndarray:
    """Each value's position in ``levels`` (NaN when missing or not a level)."""
    categories = values.categories
    if len(categories) <= 64:  # the usual few values: their mapping is remembered
        mapped = _level_map(levels, tuple(str(c) for c in categories))
    else:
        mapped = _new_level_map(levels, categories)
    return mapped[values.codes]


@functools.lru_cache(maxsize=1024)
def _level_map(levels: tuple[str, ...], categories: tuple[str, ...]) -> np.ndarray:
    return _new_level_map(levels, pd.Index(list(categories), dtype="string"))


def _new_level_map(levels: tuple[str, ...], categories: pd.Index) -> np.ndarray:
    """Level position (float, NaN if none) per category, then NaN for code -1."""
    mapped = _levels_index(levels).get_indexer(pd.Index(categories.astype("string")))
    mapped = np.append(mapped, -1).astype(np.float64)  # code -1 (missing) -> last
    mapped[mapped < 0] = np.nan
    mapped.flags.writeable = False  # shared by the cache
    return mapped


def _as_float(col: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_timedelta64_dtype(col):
        return (col.dt.total_seconds() / 86400.0).to_numpy(dtype=np.float64, na_value=np.nan)
    if not (pd.api.types.is_numeric_dtype(col) or col.dtype == object):
        raise SchemaError(
            f"Expected model input {name!r} to be numeric or boolean (or declared "
            f"categorical in the contract). Got dtype {col.dtype} instead."
        )
    try:
        return pd.to_numeric(col).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"Expected model input {name!r} to hold numbers. Got {col.dtype} values "
            "that are not numbers."
        ) from exc


def calibrate(raw: np.ndarray, contract: ModelContract, x: np.ndarray | None = None) -> np.ndarray:
    """Map raw model outputs to scores: the contract's BTYD blend (which reads the model
    matrix ``x`` of the same rows), then its calibration (identity if none)."""
    raw = np.asarray(raw, dtype=np.float64)
    if contract.blend is not None:
        if x is None:
            raise ValueError("A model with a BTYD blend needs its matrix rows to score.")
        btyd = btyd_prediction(
            contract.blend, contract.target, contract.horizon_days, contract.feature_names, x
        )
        raw = blend_scores(contract.target, contract.blend.weight, contract.blend.offset, raw, btyd)
    cal = contract.calibration
    if cal is None:
        return raw
    if isinstance(cal, IsotonicCalibration):
        return np.interp(raw, np.asarray(cal.x), np.asarray(cal.y))
    eps = 1e-12
    p = np.clip(raw, eps, 1 - eps)
    logit = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(cal.a * logit + cal.b))


def predict_raw(model: Any, x: np.ndarray) -> np.ndarray:
    """Raw output of a LightGBM ``Booster`` or sklearn-API model on ``x``, one thread.

    A binary booster yields the positive-class probability; a regression booster its
    prediction on the response scale (e.g. expected spend for Tweedie).
    """
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "predict"):
        raise TypeError(f"Expected a LightGBM Booster or LGBMModel. Got {type(model).__name__}.")
    if len(x) == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)


def score_frame(model: Any, features: pd.DataFrame, contract: ModelContract) -> np.ndarray:
    """Scores of every row of ``features``: matrix -> raw prediction -> calibration.

    The one scoring path shared by training, batch tagging and the HTTP service.
    """
    x = model_matrix(features, contract)
    return calibrate(predict_raw(model, x), contract, x)


def contract_metadata(contract: ModelContract) -> dict[str, Any]:
    """The ``metadata`` dict to pass to ``mlflow.lightgbm.log_model``."""
    return {CONTRACT_METADATA_KEY: contract.model_dump(mode="json")}


def contract_from_metadata(
    metadata: dict[str, Any] | None, *, source: str = "model"
) -> ModelContract:
    """Read the contract back from an MLflow model's ``metadata``.

    Raises:
        SchemaError: The metadata holds no contract or an invalid one.
    """
    if not metadata or CONTRACT_METADATA_KEY not in metadata:
        raise SchemaError(
            f"Expected {source} to carry a Tagsmith model contract under metadata key "
            f"{CONTRACT_METADATA_KEY!r}. Got metadata keys {sorted(metadata or {})} instead: "
            "was it trained with 'tagsmith models train'?"
        )
    try:
        return ModelContract.model_validate(metadata[CONTRACT_METADATA_KEY])
    except ValidationError as exc:
        raise SchemaError(f"The model contract of {source} is invalid: {exc}") from exc


def _finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)
