"""Time windows of the event functions, and the time and id conversions both event
indexes share (:mod:`tags.rules.raw_events`, :mod:`tags.rules.prepared`).

A window is ``[start, end)`` in nanoseconds since the epoch (UTC), never ending after
the evaluation time ``as_of``: :func:`window_bounds` is its one definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tags.rules import ast

__all__ = ["DAY_NS", "NAT", "arrow_strings", "ceil_us", "raw_times", "to_ns", "window_bounds"]

DAY_NS = 86_400 * 10**9
# The smallest int64: NaT in datetime64 arrays, and "no lower bound" for windows.
NAT = int(np.iinfo(np.int64).min)


def to_ns(values: pd.Series | pd.Timestamp | str | np.datetime64) -> Any:
    """Nanoseconds since the epoch (UTC) of a timestamp or a datetime column.

    Naive timestamps are taken as UTC. Columns come back as int64 arrays (NaT as the
    smallest int64).
    """
    if isinstance(values, pd.Series):
        series = values
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series, utc=True)
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return series.to_numpy(dtype="datetime64[ns]").view(np.int64)
    stamp = pd.Timestamp(values)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def ceil_us(t_ns: int) -> int:
    """``t_ns`` rounded up to whole microseconds: ``t_us < ceil_us(t_ns)`` exactly when
    ``t_us * 1000 < t_ns``, without overflow for any int64 ``t_ns``."""
    return -(-t_ns // 1000)


def raw_times(series: pd.Series) -> tuple[np.ndarray, int]:
    """Timestamps as stored (int64 in the column's unit) and the factor to nanoseconds.

    Zero-copy for canonical ``datetime64[us, UTC]`` columns; NaT is the smallest int64.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        unit = series.dt.unit
        factor = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        return np.asarray(series.array.asi8), factor
    return to_ns(series), 1


def arrow_strings(values: pd.Series | pd.Index | np.ndarray) -> pa.Array:
    """A column as an Arrow large_string array (zero-copy for Arrow-backed strings)."""
    array = pa.array(pd.Series(values).array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def window_bounds(window: ast.Window | None, as_of_ns: int) -> tuple[int, int]:
    """``[start, end)`` of a window in ns, ``end <= as_of_ns``; no window means all
    history before ``as_of`` (``start`` is :data:`NAT`)."""
    if window is None:
        return NAT, as_of_ns
    if window.kind == "relative":
        start = as_of_ns - round(float(window.start) * DAY_NS)
        end = as_of_ns - round(float(window.end or 0) * DAY_NS)
        return start, min(end, as_of_ns)
    end_abs = as_of_ns if window.end is None else min(int(window.end), as_of_ns)
    return int(window.start), end_abs
