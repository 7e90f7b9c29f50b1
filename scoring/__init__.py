"""Scoring: the model contract, loading models and champions, batch tagging runs.

The layer between ``tags`` and ``training | serving``: training writes models that
carry a :class:`ModelContract`, and batch tagging and the HTTP service score through
the same contract, so a customer gets the same number everywhere. The registry names
(``churn-predictor``, ``value-predictor``) and the contract are the only link between
training and serving.
"""

from __future__ import annotations

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
