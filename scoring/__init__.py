"""Scoring: the model contract, loading models and champions, batch tagging runs.

The layer between ``tags`` and ``training | serving``: training writes models that
carry a :class:`ModelContract`, and batch tagging and the HTTP service score through
the same contract, so a customer gets the same number everywhere. The registry names
(``churn-predictor``, ``value-predictor``) and the contract are the only link between
training and serving.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoring.batch import (
        NO_CHAMPION_NOTICE,
        STEPS,
        FactSource,
        InMemoryFacts,
        Predictor,
        TaggingResult,
        default_as_of,
        inputs_fingerprint,
        run_tagging,
    )
    from scoring.champions import (
        ChampionModel,
        ChampionPredictor,
        MlflowModelSource,
        ModelTag,
        band_labels,
        load_champion_predictors,
    )
    from scoring.contract import (
        CONTRACT_METADATA_KEY,
        CONTRACT_VERSION,
        REGISTERED_MODEL_NAMES,
        Calibration,
        IsotonicCalibration,
        ModelContract,
        PlattCalibration,
        calibrate,
        categorical_levels_of,
        contract_from_metadata,
        contract_metadata,
        model_matrix,
        predict_raw,
        score_frame,
    )
    from scoring.errors import ModelLoadError, ScoringError
    from scoring.loading import ScoringModel, load_model

__all__ = [
    "CONTRACT_METADATA_KEY",
    "CONTRACT_VERSION",
    "NO_CHAMPION_NOTICE",
    "REGISTERED_MODEL_NAMES",
    "STEPS",
    "Calibration",
    "ChampionModel",
    "ChampionPredictor",
    "FactSource",
    "InMemoryFacts",
    "IsotonicCalibration",
    "MlflowModelSource",
    "ModelContract",
    "ModelLoadError",
    "ModelTag",
    "PlattCalibration",
    "Predictor",
    "ScoringError",
    "ScoringModel",
    "TaggingResult",
    "band_labels",
    "calibrate",
    "categorical_levels_of",
    "contract_from_metadata",
    "contract_metadata",
    "default_as_of",
    "inputs_fingerprint",
    "load_champion_predictors",
    "load_model",
    "model_matrix",
    "predict_raw",
    "run_tagging",
    "score_frame",
]

# Names are imported from their modules on first use: `import scoring.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "NO_CHAMPION_NOTICE": "scoring.batch",
    "STEPS": "scoring.batch",
    "FactSource": "scoring.batch",
    "InMemoryFacts": "scoring.batch",
    "Predictor": "scoring.batch",
    "TaggingResult": "scoring.batch",
    "default_as_of": "scoring.batch",
    "inputs_fingerprint": "scoring.batch",
    "run_tagging": "scoring.batch",
    "ChampionModel": "scoring.champions",
    "ChampionPredictor": "scoring.champions",
    "MlflowModelSource": "scoring.champions",
    "ModelTag": "scoring.champions",
    "band_labels": "scoring.champions",
    "load_champion_predictors": "scoring.champions",
    "CONTRACT_METADATA_KEY": "scoring.contract",
    "CONTRACT_VERSION": "scoring.contract",
    "REGISTERED_MODEL_NAMES": "scoring.contract",
    "Calibration": "scoring.contract",
    "IsotonicCalibration": "scoring.contract",
    "ModelContract": "scoring.contract",
    "PlattCalibration": "scoring.contract",
    "calibrate": "scoring.contract",
    "categorical_levels_of": "scoring.contract",
    "contract_from_metadata": "scoring.contract",
    "contract_metadata": "scoring.contract",
    "model_matrix": "scoring.contract",
    "predict_raw": "scoring.contract",
    "score_frame": "scoring.contract",
    "ModelLoadError": "scoring.errors",
    "ScoringError": "scoring.errors",
    "ScoringModel": "scoring.loading",
    "load_model": "scoring.loading",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
