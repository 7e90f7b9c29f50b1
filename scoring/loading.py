"""Loading a Tagsmith model from MLflow with its contract (``models:/name@alias`` or a run).

The contract travels in the MLflow model's ``metadata`` (see :mod:`scoring.contract`);
a loaded :class:`ScoringModel` scores feature frames through the one shared path,
:func:`scoring.contract.score_frame`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.contract import ModelContract, contract_from_metadata, score_frame

__all__ = ["ScoringModel", "load_model"]


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model with its contract: the unit that scores feature frames.

    Attributes:
        booster: The LightGBM booster.
        contract: Its model contract.
        uri: Where it was loaded from.
    """

    booster: Any
    contract: ModelContract
    uri: str

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated scores of every row of ``features`` (see :func:`score_frame`)."""
        return score_frame(self.booster, features, self.contract)


def load_model(model_uri: str, *, dst_path: Path | None = None) -> ScoringModel:
    """Load a Tagsmith model (e.g. ``models:/churn-predictor@champion``) and its contract.

    The model is downloaded once (into ``dst_path`` or a temporary folder that is
    removed afterwards); the booster is set to predict on one thread.

    Raises:
        SchemaError: The model carries no valid contract.
    """
    import mlflow.artifacts
    import mlflow.lightgbm
    from mlflow.models import Model

    def _load(folder: str) -> ScoringModel:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        spec = _mlmodel(Path(local))
        meta = Model.load(local).metadata if spec is None else spec.get("metadata")
        contract = contract_from_metadata(meta, source=model_uri)
        booster = _plain_booster(Path(local), spec)
        if booster is None:
            loaded = mlflow.lightgbm.load_model(local)
            booster = getattr(loaded, "booster_", loaded)
        return ScoringModel(booster=booster, contract=contract, uri=model_uri)

    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)
        return _load(str(dst_path))
    with tempfile.TemporaryDirectory(prefix="tagsmith-model-") as tmp:
        return _load(tmp)


def _mlmodel(folder: Path) -> dict[str, Any] | None:
    """The ``MLmodel`` file parsed with libyaml's C loader (None: not there / not a map).

    MLflow parses it with the pure-Python loader, twice per load: with a contract of a
    hundred features that took ~80 ms a parse, most of a one-customer profile's time.
    """
    import yaml

    path = folder / "MLmodel"
    if not path.is_file():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as handle:
        parsed = yaml.load(handle, Loader=loader)  # noqa: S506 (a safe loader)
    return parsed if isinstance(parsed, dict) else None


def _plain_booster(folder: Path, spec: dict[str, Any] | None) -> Any:
    """The booster of a model logged as a plain ``lightgbm.Booster`` (Tagsmith's own
    models), read straight from its file; None for anything else (MLflow loads those)."""
    import lightgbm as lgb

    flavor = ((spec or {}).get("flavors") or {}).get("lightgbm") or {}
    data = flavor.get("data")
    if flavor.get("model_class") != "lightgbm.basic.Booster" or not isinstance(data, str):
        return None
    path = folder / data
    if not path.is_file():
        return None
    return lgb.Booster(model_file=str(path))
