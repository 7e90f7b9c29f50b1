"""Seasonally weighted (operational) time for the BTYD blend.

A Pareto/NBD fitted and predicted in calendar time misreads P(alive) around a busy or a
slow season (see :mod:`training.season`, which estimates the calendar-month index from
the history). In operational time each day counts for its month's index, so a quiet
spring is not read as attrition and a December peak not as loyalty. A blend that
carries an index (:class:`scoring.btyd.BTYDBlend`) converts every row's ``t_x``, ``T``
and the horizon with these functions, anchored at the date its parameters were fitted
for, so every scoring path computes the same thing from the same row. Time is in weeks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["operational_weeks", "seasonal_inputs"]


def operational_weeks(
    index: Sequence[float] | np.ndarray, origin: pd.Timestamp, days: np.ndarray
) -> np.ndarray:
    """Seasonally weighted time: the sum of the daily index from ``origin`` to ``origin +
    days`` (days may be negative or fractional), in weeks.

    A busy month counts for more than its calendar length, so a customer who was quiet
    through a slow spring is not read as having left.
    """
    days = np.asarray(days, dtype=np.float64)
    index = np.asarray(index, dtype=np.float64)
    origin = origin.tz_convert(None) if origin.tzinfo else origin
    lo = min(int(np.floor(days.min())), 0) if days.size else 0
    hi = max(int(np.ceil(days.max())), 0) + 1 if days.size else 1
    grid = pd.date_range(origin.normalize() + pd.Timedelta(days=lo), periods=hi - lo)
    cum = np.concatenate([[0.0], np.cumsum(index[grid.month.to_numpy() - 1])])
    at = np.interp(days - lo, np.arange(cum.size, dtype=np.float64), cum)
    return np.asarray((at - cum[-lo]) / 7.0)


def seasonal_inputs(
    index: Sequence[float] | np.ndarray,
    as_of: pd.Timestamp,
    *,
    recency_days: np.ndarray,
    age_days: np.ndarray,
    horizon_days: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(t_x, T, horizon)`` in seasonally weighted weeks for customers summarised at
    ``as_of`` (first purchase ``age_days`` and last ``recency_days`` before it); missing
    values read as :func:`scoring.btyd.blend_inputs` reads them (no age, recency 0)."""
    age = np.maximum(np.nan_to_num(np.asarray(age_days, dtype=np.float64), nan=0.0), 0.0)
    recency = np.clip(np.nan_to_num(np.asarray(recency_days, dtype=np.float64), nan=0.0), 0.0, age)
    now = operational_weeks(index, as_of, np.array([0.0, float(horizon_days)]))
    first = operational_weeks(index, as_of, -age)
    last = operational_weeks(index, as_of, -recency)
    big_t = now[0] - first
    t_x = np.clip(last - first, 0.0, big_t)
    return t_x, big_t, float(now[1] - now[0])
