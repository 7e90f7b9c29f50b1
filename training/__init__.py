"""Predictive tags: labels, estimators, baselines, evaluation, MLflow tracking, promotion."""

from __future__ import annotations

from training.alias_history import AliasEvent, AliasHistory, AliasInterval
from training.config import TrainingConfig
from training.errors import (
    ModelLoadError,
    PromotionConflict,
    PromotionError,
    RegistryError,
    TrainingError,
)
from training.gates import Gate, GateReport, PromotionConfig, evaluate_gates
from training.promotion import LabelledWindow, contest, promote, rollback, score_predictions
from training.registry import CHALLENGER, CHAMPION, LoadedModel, ModelRegistry

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "AliasEvent",
    "AliasHistory",
    "AliasInterval",
    "Gate",
    "GateReport",
    "LabelledWindow",
    "LoadedModel",
    "ModelLoadError",
    "ModelRegistry",
    "PromotionConfig",
    "PromotionConflict",
    "PromotionError",
    "RegistryError",
    "TrainingConfig",
    "TrainingError",
    "contest",
    "evaluate_gates",
    "promote",
    "rollback",
    "score_predictions",
]
