"""Windowed and trend families: counts and amount sums per event type over the
last ``w`` days, and how the last window compares with the one before it.

One kernel (:func:`window_columns`) computes the columns of several windows of a type
in one vectorised pass: the windows' bounds stacked into one (windows x customers)
array, then one subtraction for every window's counts, one lookup for every window's
amount sums and one division for every trend. Small calls (the live path's few
customers, where each array operation's fixed cost dominates) take every window at
once; long builds take one window at a time, so that their temporaries stay those of
one window (the peak memory of long builds, see :mod:`features.cutoffs`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from features.event_arrays import AMOUNT_SCALE
from features.families.base import Cutoff
from features.spec import FeatureSpec

__all__ = ["ALL_WINDOWS_ROWS", "columns", "window_columns"]

# Rows (customers) up to which every window of a type is computed in one pass: there
# the temporaries of all windows are a few hundred kilobytes at most.
ALL_WINDOWS_ROWS = 4096


def columns(cut: Cutoff, spec: FeatureSpec, etype: str) -> Iterator[dict[str, Any]]:
    """Windowed and trend columns of ``etype``: every window at once for up to
    :data:`ALL_WINDOWS_ROWS` customers, else one window at a time."""
    windows = list(spec.windows)
    groups = [windows] if len(cut.codes) <= ALL_WINDOWS_ROWS else [[w] for w in windows]
    for group in groups:
        yield window_columns(cut, spec, etype, group)
        # A window's bounds serve only its own columns and the next trend.
        cut.forget_ends(etype, from_days=1, to_days=group[-1])
    cut.forget_ends(etype, from_days=1)


def window_columns(
    cut: Cutoff, spec: FeatureSpec, etype: str, windows: Sequence[int]
) -> dict[str, Any]:
    """The windowed and trend columns of ``etype`` for ``windows`` (days), in one pass.

    Each column is a row of a (windows x customers) array: counts in the index's
    position dtype, amount sums in float64, trends divided in float64 and stored at
    the catalogue's float32.
    """
    trend = spec.has("trend")
    counted = spec.has("windowed")
    end = cut.end(etype)
    starts = _bounds(cut, etype, windows)  # (windows, customers)
    last = end - starts  # events in each window
    cols: dict[str, Any] = {}
    if counted:
        for j, w in enumerate(windows):
            cols[f"{etype}_count_{w}d"] = last[j]
        if etype in spec.amount_event_types:
            cs = cut.p.amounts(etype)[0]
            sums = (cs[end] - cs[starts]) / AMOUNT_SCALE
            for j, w in enumerate(windows):
                cols[f"{etype}_amount_{w}d"] = sums[j]
    if trend:
        prev = starts - _bounds(cut, etype, [2 * w for w in windows])  # the windows before
        both = last + prev
        prev -= last  # previous - last
        np.negative(prev, out=prev)
        # Divided in float64, stored at the catalogue's float32: no wide copy.
        trends = np.zeros(prev.shape, dtype=np.float32)
        np.divide(prev, both, out=trends, where=both > 0)
        for j, w in enumerate(windows):
            cols[f"{etype}_count_trend_{w}d"] = trends[j]
        del prev, both
    return cols


def _bounds(cut: Cutoff, etype: str, back_days: Sequence[int]) -> np.ndarray:
    """The ends of ``etype`` events before cut - d for each d of ``back_days``, one row
    each; one window's row is a view of the cached bounds (a long build copies none)."""
    if len(back_days) == 1:
        return cut.end(etype, back_days[0])[None, :]
    return np.stack([cut.end(etype, d) for d in back_days])
