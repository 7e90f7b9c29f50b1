"""Predictive tags: labels, estimators, baselines, evaluation, MLflow tracking, promotion."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# LightGBM's OpenMP threads spin while waiting by default; on a shared or busy machine
# that turns a 2-second fit into a minute. Must be set before lightgbm is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
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
    from training.estimators import (
        ChurnClassifier,
        ValueRegressor,
        make_churn_model,
        make_value_model,
    )
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

# Names are imported from their modules on first use: `import training.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "AliasEvent": "training.alias_history",
    "AliasHistory": "training.alias_history",
    "AliasInterval": "training.alias_history",
    "make_baselines": "training.baselines",
    "BGNBD": "training.clv",
    "GammaGamma": "training.clv",
    "TrainingConfig": "training.config",
    "ModelLoadError": "training.errors",
    "PromotionConflict": "training.errors",
    "PromotionError": "training.errors",
    "RegistryError": "training.errors",
    "TrainingError": "training.errors",
    "ChurnClassifier": "training.estimators",
    "ValueRegressor": "training.estimators",
    "make_churn_model": "training.estimators",
    "make_value_model": "training.estimators",
    "churn_metrics": "training.evaluation",
    "normalized_gini": "training.evaluation",
    "value_metrics": "training.evaluation",
    "Gate": "training.gates",
    "GateReport": "training.gates",
    "PromotionConfig": "training.gates",
    "evaluate_gates": "training.gates",
    "CutoffPlan": "training.labels",
    "label_table": "training.labels",
    "plan_cutoffs": "training.labels",
    "TrainingResult": "training.pipeline",
    "build_training_set": "training.pipeline",
    "train_predictor": "training.pipeline",
    "LabelledWindow": "training.promotion",
    "contest": "training.promotion",
    "promote": "training.promotion",
    "rollback": "training.promotion",
    "score_predictions": "training.promotion",
    "CHALLENGER": "training.registry",
    "CHAMPION": "training.registry",
    "LoadedModel": "training.registry",
    "ModelRegistry": "training.registry",
    "RegisteredRun": "training.tracking",
    "log_training": "training.tracking",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
