"""Predictive tags: labels, estimators, baselines, evaluation, MLflow tracking, promotion."""

from __future__ import annotations

from training.config import TrainingConfig
from training.errors import TrainingError

__all__ = ["TrainingConfig", "TrainingError"]
