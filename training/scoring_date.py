"""The scoring date's features, built in the same pass as the training cutoffs'.

The ``blend`` candidate (:mod:`training.blend`) refits its Pareto/NBD on every customer
with a purchase before the *scoring date* (the day after the last event). Building those
features on their own prepares (sorts and indexes) all the events a second time, which
cost as much as half of the six training cutoffs' build at 1M customers;
:class:`AlsoAtScoringDate` adds the scoring date to the training build instead, so one
preparation serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.errors import TrainingError

__all__ = ["AlsoAtScoringDate", "buyers_only", "scoring_date"]


def scoring_date(events: pd.DataFrame) -> pd.Timestamp:
    """The day after the last event (UTC midnight): the date the next horizon starts."""
    last = pd.Timestamp(events["occurred_at"].max())
    day = (last.tz_convert("UTC") if last.tzinfo else last.tz_localize("UTC")).normalize()
    return day + pd.Timedelta(days=1)


def buyers_only(feats: pd.DataFrame) -> pd.DataFrame:
    """The rows of customers with a purchase (all rows without ``frequency_days``), in a
    frame of their own: never a view that would keep a larger parent frame alive."""
    if "frequency_days" in feats.columns:
        return feats.loc[feats["frequency_days"].fillna(0).to_numpy() >= 1].reset_index(drop=True)
    return feats.reset_index(drop=True).copy()


class AlsoAtScoringDate:
    """A feature builder that also builds ``as_of`` = the scoring date, keeps those rows
    (customers with a purchase) in :attr:`population` and returns the others.

    Attributes:
        builder: The wrapped ``build_features``-compatible function.
        as_of: The scoring date.
        population: The scoring date's rows, without the ``as_of`` column (``None``
            until called).
    """

    def __init__(self, builder: Any, as_of: pd.Timestamp) -> None:
        self.builder = builder
        self.as_of = as_of
        self.population: pd.DataFrame | None = None

    def __call__(
        self, customers: pd.DataFrame, events: pd.DataFrame, *, as_of: Sequence[Any], spec: Any
    ) -> pd.DataFrame:
        """Features at every ``as_of`` (the training cutoffs), the long table's layout.

        Raises:
            TrainingError: The builder's long table has no ``as_of`` column.
        """
        feats = self.builder(customers, events, as_of=[*as_of, self.as_of], spec=spec)
        if "as_of" not in feats.columns:
            raise TrainingError(
                "Expected the feature frame of several cutoffs to have an 'as_of' column. "
                f"Got {list(feats.columns)[:6]}..."
            )
        now = (pd.to_datetime(feats["as_of"], utc=True) == self.as_of).to_numpy()
        first = int(np.argmax(now)) if now.any() else len(now)
        if now[first:].all():
            # Long tables are ordered by as_of, so the latest date is the tail: slice
            # (no copy of the training rows) rather than mask.
            self.population = buyers_only(feats.iloc[first:].drop(columns="as_of"))
            return feats.iloc[:first]
        self.population = buyers_only(feats.loc[now].drop(columns="as_of"))
        return feats.loc[~now].reset_index(drop=True)

    def take(self) -> pd.DataFrame | None:
        """The population, released here (it is used once; training goes on for long)."""
        population, self.population = self.population, None
        return population
