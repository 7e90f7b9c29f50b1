"""The latest labelled window, built exactly as training builds its test slice.

Promotion and contests judge every producer on the same rows: the population at the
latest cutoff whose horizon is fully observed (training's test cutoff), with
point-in-time features and the observed outcome. Baselines are fitted on the earlier
cutoffs (training and validation), as in every training run, and predict that window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.baselines import make_baselines
from training.config import TrainingConfig
from training.errors import TrainingError
from training.labels import CutoffPlan, plan_cutoffs
from training.pipeline import FeatureBuilder, TrainingSet, build_training_set
from training.promotion import LabelledWindow

__all__ = ["Rescoring", "latest_rescoring"]

# Label-table columns that describe the horizon after the cutoff: never rule inputs.
_OUTCOME_COLUMNS = ("horizon_purchases", "churn", "value", "cutoff")


@dataclass(frozen=True)
class Rescoring:
    """The labelled rows of every planned cutoff, and the latest window among them.

    Attributes:
        target: 'churn' or 'value'.
        training_set: Labels and features at every cutoff of ``plan``.
        config: The training settings the baselines are fitted with.
        events: The events the window was built from (rule tags count them).
    """

    target: str
    training_set: TrainingSet
    config: TrainingConfig
    events: pd.DataFrame

    @property
    def plan(self) -> CutoffPlan:
        """The cutoffs: the window is at ``plan.test``."""
        return self.training_set.plan

    @property
    def window(self) -> LabelledWindow:
        """The population at the latest labelled cutoff with features and outcome."""
        test = self.training_set.slice("test").reset_index(drop=True)
        return LabelledWindow(
            task=self.target,
            cutoff=self.plan.test,
            horizon_days=self.plan.horizon_days,
            features=test,
            labels=test[self.target].to_numpy(dtype=np.float64),
        )

    def rule_features(self) -> pd.DataFrame:
        """The window's feature rows without the outcome columns (what rules may read)."""
        test = self.training_set.slice("test").reset_index(drop=True)
        return test.drop(columns=[c for c in _OUTCOME_COLUMNS if c in test.columns])

    def baseline_scores(self, window: LabelledWindow | None = None) -> Mapping[str, np.ndarray]:
        """Each baseline fitted on the earlier cutoffs, scoring the latest window."""
        ts = self.training_set
        test = ts.slice("test").reset_index(drop=True)
        fit_rows = pd.concat([ts.slice("train"), ts.slice("validation")])
        numeric = [n for n in ts.feature_names if n not in ts.categorical_levels]
        return {
            b.name: np.asarray(b.fit(fit_rows).predict(test), dtype=np.float64)
            for b in make_baselines(
                self.target,  # type: ignore[arg-type]
                numeric_features=numeric,
                horizon_days=self.plan.horizon_days,
                seed=self.config.seed,
            )
        }


def latest_rescoring(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    target: str,
    config: TrainingConfig,
    feature_builder: FeatureBuilder,
    spec: Any = None,
    horizon_days: int | None = None,
) -> Rescoring:
    """Plan the cutoffs as training does and build the labelled rows of each.

    Args:
        customers: Canonical customers.
        events: Canonical events.
        target: 'churn' or 'value'.
        config: Training settings (cutoff spacing and count, baseline seed).
        feature_builder: ``build_features``-compatible function.
        spec: Feature spec passed to it.
        horizon_days: Label horizon; default ``config.horizon_days``. Pass the
            candidate's contract horizon so it is judged on what it predicts.

    Raises:
        TrainingError: No purchases, or a history too short for the horizon.
    """
    if target not in ("churn", "value"):
        raise TrainingError(f"Expected target 'churn' or 'value'. Got {target!r}.")
    if horizon_days is not None:
        config = config.model_copy(update={"horizon_days": horizon_days})
    purchases = events.loc[events["event_type"] == "purchase", "occurred_at"]
    if purchases.empty:
        raise TrainingError(
            "Expected purchase events to label the latest window. Got no purchases."
        )
    plan = plan_cutoffs(
        pd.Timestamp(purchases.min()),
        pd.Timestamp(events["occurred_at"].max()),
        horizon_days=config.horizon_days,
        n_cutoffs=config.n_cutoffs,
        step_months=config.cutoff_step_months,
    )
    ts = build_training_set(
        customers, events, plan=plan, feature_builder=feature_builder, spec=spec
    )
    return Rescoring(target=target, training_set=ts, config=config, events=events)
