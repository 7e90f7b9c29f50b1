"""The ``python_function`` flavor of a Tagsmith model: features as callers have them.

A Tagsmith model's booster reads a float matrix in which a categorical feature is the
index of its level (:func:`scoring.contract.model_matrix`). Its MLflow signature says
what a caller sends instead: categorical features as strings (their levels), numbers as
doubles. This module is the pyfunc loader that makes the signature true: it codes the
strings with the levels of the model contract (in the model's ``metadata``) and calls
the booster. Its output, like the signature's, is the booster's prediction before the
contract's calibration (``scoring.contract.calibrate``, which Tagsmith's own scores
apply). Tagsmith itself loads the native ``lightgbm`` flavor and never this one.

The file is copied into each logged model (``code/``) and imported there as
``tagsmith_pyfunc``, so it imports nothing from Tagsmith: only numpy, pandas, MLflow
and LightGBM, which the model's requirements list.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LOADER_MODULE", "TagsmithPyfunc", "code_matrix"]

LOADER_MODULE = "tagsmith_pyfunc"
_CONTRACT_KEY = "tagsmith_contract"  # scoring.contract.CONTRACT_METADATA_KEY


def code_matrix(
    frame: pd.DataFrame, feature_names: list[str], levels: dict[str, list[str]]
) -> np.ndarray:
    """The booster's float matrix of ``frame``: levels coded, unknown or missing -> NaN.

    Raises:
        ValueError: A feature of the model is absent from ``frame`` (names it).
    """
    missing = [n for n in feature_names if n not in frame.columns]
    if missing:
        raise ValueError(
            f"Expected every model input among the columns. Got none for {missing[:10]}."
        )
    out = np.empty((len(frame), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        column = frame[name]
        if name in levels:
            index = pd.Index(levels[name])
            codes = index.get_indexer(pd.Index(column.astype("string").fillna("\0missing")))
            out[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return out


class TagsmithPyfunc:
    """A booster with its inputs' contract: ``predict`` takes the signature's frame."""

    def __init__(self, booster: Any, feature_names: list[str], levels: dict[str, list[str]]):
        self.booster = booster
        self.feature_names = feature_names
        self.levels = levels

    def get_raw_model(self) -> Any:
        """The LightGBM booster."""
        return self.booster

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """Scores of ``data`` (one row per customer, the signature's columns)."""
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        matrix = code_matrix(frame, self.feature_names, self.levels)
        return np.asarray(self.booster.predict(matrix, num_threads=1))


def _load_pyfunc(path: str) -> TagsmithPyfunc:
    """Called by ``mlflow.pyfunc.load_model`` with the booster file of the model."""
    import mlflow.lightgbm
    from mlflow.models import Model

    root = os.path.dirname(path)
    contract = (Model.load(root).metadata or {}).get(_CONTRACT_KEY)
    if not contract:
        raise ValueError(f"Expected a Tagsmith model contract in {root}/MLmodel. Got none.")
    loaded = mlflow.lightgbm._load_model(path)
    booster = getattr(loaded, "booster_", loaded)
    return TagsmithPyfunc(
        booster, list(contract["feature_names"]), dict(contract["categorical_levels"])
    )
