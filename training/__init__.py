"""Predictive tags: labels, estimators, baselines, evaluation, MLflow tracking, promotion."""

from __future__ import annotations

from training.baselines import make_baselines
from training.clv import BGNBD, GammaGamma
from training.config import TrainingConfig
from training.errors import TrainingError
from training.estimators import ChurnClassifier, ValueRegressor, make_churn_model, make_value_model
from training.evaluation import churn_metrics, normalized_gini, value_metrics
from training.labels import CutoffPlan, label_table, plan_cutoffs
from training.pipeline import TrainingResult, build_training_set, train_predictor
from training.tracking import RegisteredRun, log_training

__all__ = [
    "BGNBD",
    "ChurnClassifier",
    "CutoffPlan",
    "GammaGamma",
    "RegisteredRun",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "ValueRegressor",
    "build_training_set",
    "churn_metrics",
    "label_table",
    "log_training",
    "make_baselines",
    "make_churn_model",
    "make_value_model",
    "normalized_gini",
    "plan_cutoffs",
    "train_predictor",
    "value_metrics",
]
