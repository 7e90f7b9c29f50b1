"""The ``training`` section of ``tagsmith.yaml``: label semantics and estimator settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TrainingConfig"]


class TrainingConfig(BaseModel):
    """How training sets are labelled and how the predictors are fitted.

    Label semantics: the population at a cutoff is every customer with at least one
    purchase before it; churn means no purchase in ``(cutoff, cutoff + horizon]``;
    value is the net purchase amount (purchases minus refunds) in that window.

    Attributes:
        horizon_days: Label horizon H in days.
        cutoff_step_months: Spacing of rolling-origin cutoffs, in months.
        n_cutoffs: How many labelled cutoffs to use (the latest ones whose horizon
            ends on or before the last event).
        validation_cutoffs: How many of the latest labelled cutoffs are held out for
            model selection, calibration and the reported metrics.
        calibration: Probability calibration of the churn model on the validation
            slice: ``isotonic``, ``platt`` or ``none``.
        tweedie_variance_power: Variance power of the value model's Tweedie loss, in
            (1, 2): a compound Poisson-gamma suits zero-inflated, heavy-tailed spend.
        num_boost_round: Upper bound on boosting rounds (early stopping on validation).
        learning_rate: LightGBM learning rate.
        num_leaves: LightGBM tree size.
        seed: Random seed of the estimators.
    """

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(default=90, ge=1, le=730)
    cutoff_step_months: int = Field(default=1, ge=1, le=12)
    n_cutoffs: int = Field(default=6, ge=2, le=60)
    validation_cutoffs: int = Field(default=1, ge=1, le=12)
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"
    tweedie_variance_power: float = Field(default=1.5, gt=1, lt=2)
    num_boost_round: int = Field(default=400, ge=1, le=10000)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2, le=4096)
    seed: int = 0

    @model_validator(mode="after")
    def _validation_leaves_training(self) -> TrainingConfig:
        if self.validation_cutoffs >= self.n_cutoffs:
            raise ValueError(
                f"validation_cutoffs must be smaller than n_cutoffs so some cutoffs train, "
                f"got validation_cutoffs={self.validation_cutoffs}, n_cutoffs={self.n_cutoffs}"
            )
        return self
