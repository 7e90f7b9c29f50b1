"""Predictive tags: labels, estimators, baselines, evaluation, MLflow tracking, promotion."""

from __future__ import annotations

import os

# LightGBM's OpenMP threads spin while waiting by default; on a shared or busy machine
# that turns a 2-second fit into a minute. Must be set before lightgbm is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from training.alias_history import AliasEvent, AliasHistory, AliasInterval
from training.baselines import make_baselines
from training.clv import BGNBD, GammaGamma
from training.config import TrainingConfig
from training.errors import (
    ModelLoadError,
    PromotionConflict,
    PromotionError,
    RegistryError,
    TrainingError,
)
from training.estimators import ChurnClassifier, ValueRegressor, make_churn_model, make_value_model
from training.evaluation import churn_metrics, normalized_gini, value_metrics
from training.gates import Gate, GateReport, PromotionConfig, evaluate_gates
from training.labels import CutoffPlan, label_table, plan_cutoffs
from training.pipeline import TrainingResult, build_training_set, train_predictor
from training.promotion import LabelledWindow, contest, promote, rollback, score_predictions
from training.registry import CHALLENGER, CHAMPION, LoadedModel, ModelRegistry
from training.tracking import RegisteredRun, log_training

__all__ = [
    "BGNBD",
    "CHALLENGER",
    "CHAMPION",
    "AliasEvent",
    "AliasHistory",
    "AliasInterval",
    "ChurnClassifier",
    "CutoffPlan",
    "GammaGamma",
    "Gate",
    "GateReport",
    "LabelledWindow",
    "LoadedModel",
    "ModelLoadError",
    "ModelRegistry",
    "PromotionConfig",
    "PromotionConflict",
    "PromotionError",
    "RegisteredRun",
    "RegistryError",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "ValueRegressor",
    "build_training_set",
    "churn_metrics",
    "contest",
    "evaluate_gates",
    "label_table",
    "log_training",
    "make_baselines",
    "make_churn_model",
    "make_value_model",
    "normalized_gini",
    "plan_cutoffs",
    "promote",
    "rollback",
    "score_predictions",
    "train_predictor",
    "value_metrics",
]
