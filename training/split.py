"""What the training data allows and warns about: customer-grouped splits when the
history is too short for a time split, features without source facts, and warnings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.labels import CutoffPlan

__all__ = [
    "MIN_TRAINING_ROWS",
    "baseline_losses",
    "customer_groups",
    "data_warnings",
    "group_slice",
    "grouped_rows",
    "unused_features",
]

# Customer-grouped splits (CutoffPlan.grouped): shares of customers per group.
_GROUP_SHARES = (0.6, 0.2, 0.2)  # training, validation, test
_GROUP_OF = {"train": (0, 0), "validation": (1, 1), "test": (2, 2), "fit": (0, 1)}


def group_slice(frame: pd.DataFrame, which: str) -> pd.DataFrame:
    lo, hi = _GROUP_OF[which]
    group = frame["split_group"]
    if not group.is_monotonic_increasing:
        return frame.loc[(group >= lo) & (group <= hi)]
    a = int(group.searchsorted(lo, side="left"))
    b = int(group.searchsorted(hi, side="right"))
    return frame.iloc[a:b]


def customer_groups(customer_ids: pd.Series) -> np.ndarray:
    """Split group per customer (0 training, 1 validation, 2 test), stable across runs:
    a hash of the id, so one customer's rows at every cutoff land in one group."""
    ids = customer_ids.astype(str).to_numpy(dtype=object)
    hashed = pd.util.hash_array(ids, hash_key="tagsmith-split-k")
    u = (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)
    train, val, _ = _GROUP_SHARES
    return np.where(u < train, 0, np.where(u < train + val, 1, 2)).astype(np.int8)


def grouped_rows(frame: pd.DataFrame, plan: CutoffPlan) -> pd.DataFrame:
    """Keep training customers' rows at every cutoff and the others' at the latest;
    order by group then cutoff so each slice is a contiguous block."""
    group = customer_groups(frame["customer_id"])
    keep = (group == 0) | (frame["cutoff"] == plan.test).to_numpy()
    out = frame.loc[keep].copy()
    out["split_group"] = group[keep]
    return out.sort_values(["split_group", "cutoff"], kind="stable", ignore_index=True)


# Feature name fragments -> the facts they are computed from, to say why a constant
# feature is unused ("no browse events").
_SOURCES = (
    ("browse", "browse"),
    ("login", "login"),
    ("engagement", "browse or login"),
    ("refund", "refund"),
    ("complain", "complaint"),
)
_ATTRIBUTE_FRAGMENTS = ("age", "gender", "region", "city", "channel", "occupation")
_CONSTANT_SAMPLE = 100_000


def _is_constant(col: pd.Series) -> bool:
    if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
        return bool(col.nunique(dropna=False) <= 1)
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    if missing.all():
        return True
    if missing.any():
        return False
    return bool(values.min() == values.max())


def unused_features(
    frame: pd.DataFrame, names: Sequence[str], events: pd.DataFrame
) -> dict[str, str]:
    """Features constant over every row (their source facts are absent), with why.

    A purchase-only log leaves browse, login, refund, complaint, category and
    attribute features constant; they are left out of the model and the card lists
    them. Columns are first checked on a sample (a varying sample proves a varying
    column), then in full.
    """
    if frame.empty:
        return {}
    sample = (
        frame.sample(_CONSTANT_SAMPLE, random_state=0) if len(frame) > _CONSTANT_SAMPLE else frame
    )
    present = set(events["event_type"].dropna().astype(str).unique())
    has_category = "category" in events.columns and bool(events["category"].notna().any())
    out: dict[str, str] = {}
    for name in names:
        if not _is_constant(sample[name]) or not _is_constant(frame[name]):
            continue
        reason = "constant on every training row"
        for fragment, source in _SOURCES:
            if fragment in name and not any(t in present for t in source.split(" or ")):
                reason = f"no {source} events"
                break
        else:
            if "categor" in name and not has_category:
                reason = "no event categories"
            elif any(name == f or name.startswith(f"{f}_") for f in _ATTRIBUTE_FRAGMENTS):
                reason = "no customer attribute facts"
        out[name] = reason
    return out


# Fewer training rows than this and the metrics of a run are noisy.
MIN_TRAINING_ROWS = 5_000


def data_warnings(plan: CutoffPlan, rows: dict[str, int]) -> list[str]:
    """Warnings about the training data: small, single-cutoff or without a time split."""
    out: list[str] = []
    if plan.grouped:
        out.append(
            f"the history is too short for a time split at a {plan.horizon_days}-day horizon: "
            f"validated and tested on customer-grouped splits (20% of customers each) at the "
            f"latest cutoff {plan.test.date()}, whose horizon overlaps the training "
            "windows; test metrics are in-period, not out-of-time"
        )
    if len(plan.train) == 1:
        out.append(
            f"a single training cutoff ({plan.train[0].date()}): the model sees one season "
            "and one customer mix; import more history for more cutoffs"
        )
    if rows["train"] < MIN_TRAINING_ROWS:
        out.append(
            f"only {rows['train']:,} training rows (fewer than {MIN_TRAINING_ROWS:,}): "
            "expect noisy metrics and a model that may not beat the baselines"
        )
    return out


def baseline_losses(lift: dict[str, tuple[str, float]]) -> list[str]:
    """One line per test metric on which the best baseline beats the model."""
    return [
        f"the model loses to baseline '{best}' on {metric} by {-delta:.4g} on the test cutoff"
        for metric, (best, delta) in lift.items()
        if delta < 0
    ]
