"""Training sets: labels at every cutoff joined with point-in-time features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from scoring.contract import categorical_levels_of
from training.errors import TrainingError
from training.labels import CutoffPlan, label_table
from training.split import group_slice, grouped_rows, unused_features

__all__ = ["FeatureBuilder", "TrainingSet", "build_training_set", "select_features"]

# build_features(customers, events, *, as_of, spec) from features.build, or a stand-in.
FeatureBuilder = Callable[..., pd.DataFrame]

_KEY = ["customer_id", "cutoff"]
_MAX_LEVELS = 200


@dataclass
class TrainingSet:
    """Labelled rows of every cutoff with their features.

    Attributes:
        frame: One row per (customer in the population, cutoff), ordered by cutoff:
            the label table's columns (history summary, ``churn``, ``value``) and the
            features.
        feature_names: Model inputs, in matrix order.
        categorical_levels: Levels of each categorical input.
        dropped_features: Feature columns not used, with the reason.
        plan: The train/validation/test cutoffs.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    categorical_levels: dict[str, list[str]]
    dropped_features: dict[str, str]
    plan: CutoffPlan

    def slice(self, which: Literal["train", "validation", "test", "fit"]) -> pd.DataFrame:
        """Rows of one part of the split (``fit``: training and validation rows).

        Rows are ordered by cutoff, so each part is a contiguous block: a view of
        ``frame``, not a copy (at a million customers a copy costs seconds and GiBs).
        """
        plan = self.plan
        if plan.grouped:
            return group_slice(self.frame, which)
        first, last = {
            "train": (plan.train[0], plan.train[-1]),
            "validation": (plan.validation, plan.validation),
            "test": (plan.test, plan.test),
            "fit": (plan.train[0], plan.validation),
        }[which]
        cut = self.frame["cutoff"]
        if not cut.is_monotonic_increasing:
            return self.frame.loc[(cut >= first) & (cut <= last)]
        lo = int(cut.searchsorted(first, side="left"))
        hi = int(cut.searchsorted(last, side="right"))
        return self.frame.iloc[lo:hi]


def _utc_series(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def select_features(
    features: pd.DataFrame, *, exclude: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Model inputs among ``features``' columns, and why the others are dropped.

    Numbers and booleans are inputs; strings and categoricals with at most 200 levels
    are categorical inputs; identifiers, timestamps and wider text are dropped.
    """
    names: list[str] = []
    dropped: dict[str, str] = {}
    for name in features.columns:
        if name in ("customer_id", "as_of", *exclude):
            continue
        col = features[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            names.append(name)
        elif pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
            dropped[name] = "timestamp"
        elif isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
            n_levels = col.nunique(dropna=True)
            if n_levels > _MAX_LEVELS:
                dropped[name] = f"{n_levels} levels (> {_MAX_LEVELS})"
            else:
                names.append(name)
        else:
            dropped[name] = f"dtype {col.dtype}"
    return names, dropped


def build_training_set(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    plan: CutoffPlan,
    feature_builder: FeatureBuilder,
    spec: Any = None,
) -> TrainingSet:
    """Labels at every cutoff of ``plan`` joined with point-in-time features.

    The labels are computed on a second thread while the features are built.

    Raises:
        TrainingError: The feature frame lacks keys, or a cutoff has no population.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-labels") as pool:
        pending = pool.submit(label_table, events, plan.all, horizon_days=plan.horizon_days)
        feats = feature_builder(customers, events, as_of=plan.all, spec=spec)
        labels = pending.result()
    if "customer_id" not in feats.columns or "as_of" not in feats.columns:
        raise TrainingError(
            "Expected the feature frame of several cutoffs to have 'customer_id' and 'as_of' "
            f"columns. Got {list(feats.columns)[:6]}..."
        )
    clash = sorted(set(feats.columns) & (set(labels.columns) - set(_KEY)))
    if clash:
        raise TrainingError(
            f"Expected feature names distinct from the label table's columns. Got {clash}."
        )
    feats = feats.rename(columns={"as_of": "cutoff"})
    feats["cutoff"] = _utc_series(feats["cutoff"])
    feats["customer_id"] = feats["customer_id"].astype("string")
    frame = labels.merge(feats, on=_KEY, how="inner", validate="one_to_one")
    if not frame["cutoff"].is_monotonic_increasing:
        frame = frame.sort_values("cutoff", kind="stable", ignore_index=True)
    counts = frame["cutoff"].value_counts()
    empty = [c.date().isoformat() for c in plan.all if counts.get(c, 0) == 0]
    if empty:
        raise TrainingError(
            f"Expected customers with a purchase before every cutoff. Got none at {empty}."
        )
    names, dropped = select_features(feats.drop(columns=_KEY))
    if plan.grouped:
        frame = grouped_rows(frame, plan)
    unused = unused_features(frame, names, events)
    names = [n for n in names if n not in unused]
    dropped = {**dropped, **unused}
    ts = TrainingSet(
        frame=frame,
        feature_names=names,
        categorical_levels={},
        dropped_features=dropped,
        plan=plan,
    )
    ts.categorical_levels = categorical_levels_of(ts.slice("fit"), names)
    return ts
