"""One call's row values for the rule closures of :mod:`tags.rule_rows`.

:class:`RowEnv` holds, per call, each feature column the compiled tags read as one
Python value per row, and each event window's value per row, read off each customer's
own segment of the event index (the values of
:meth:`tags.rules.prepared.PreparedEventIndex.aggregate`, without its searches over
all customers, which at one customer cost more than the answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from features.event_arrays import AMOUNT_SCALE
from features.events import PreparedEvents
from features.families.base import Coded
from features.small_events import category_strings
from tags.rules import ast
from tags.rules.context import EvalContext
from tags.rules.values import BOOL, NUM, STR
from tags.rules.windows import DAY_NS, NAT, ceil_us, window_bounds

__all__ = ["RowEnv", "Unsupported"]

_NAN = float("nan")


class Unsupported(Exception):
    """A construct the closures do not cover: the tag stays with the interpreter."""


class RowEnv:
    """One call's values, shared by every tag of the call.

    Attributes:
        n: Number of rows.
        ctx: The interpreter's context over the same arrays (event windows, aggregates
            and the value columns come from it, so they are computed once per call).
        cols: Column name or event-call key -> one Python value per row.
        aggs: The current tag's aggregate values, by slot.
        lets: The current row's ``let`` values, by slot.
    """

    __slots__ = ("aggs", "arrays", "codes", "cols", "ctx", "lets", "n", "prepared")

    def __init__(
        self,
        n: int,
        arrays: Mapping[str, Any],
        ctx: EvalContext,
        prepared: PreparedEvents,
        codes: np.ndarray,
    ) -> None:
        self.n = n
        self.arrays = arrays
        self.ctx = ctx
        self.prepared = prepared
        self.codes = codes
        self.cols: dict[Any, list[Any]] = {}
        self.aggs: list[float] = []
        self.lets: list[Any] = []

    def window(self, func: str, event_type: str, window: ast.Window | None) -> list[float]:
        """``count``/``sum``/``days_since`` of each row's ``event_type`` events in
        ``window``, per row: :meth:`tags.rules.prepared.PreparedEventIndex.aggregate`'s
        values, read off each customer's own segment instead of searching for all."""
        as_of_ns = self.ctx.as_of_ns
        assert as_of_ns is not None
        lo, hi = window_bounds(window, as_of_ns)
        empty = 0.0 if func in ("count", "sum") else _NAN
        prep = self.prepared
        if lo >= hi or event_type not in prep.event_types:
            return [empty] * self.n
        typed = prep.typed(event_type)
        starts, t_us = typed.starts, typed.t_us
        # A bound is the segment's start plus its events before the cut (what the
        # index's searches and counts give, whatever the order within a second).
        hi_us, lo_us = ceil_us(hi), None if lo == NAT else ceil_us(lo)
        cs = prep.amounts(event_type)[0] if func == "sum" else None
        out = []
        for code in self.codes.tolist():
            if code < 0:
                out.append(empty)
                continue
            start = int(starts[code])
            segment = t_us[start : int(starts[code + 1])]
            upper = start + int(np.count_nonzero(segment < hi_us))
            lower = start if lo_us is None else start + int(np.count_nonzero(segment < lo_us))
            if func == "count":
                out.append(float(upper - lower))
            elif cs is not None:
                out.append(float((cs[upper] - cs[lower]) / AMOUNT_SCALE))
            elif upper > lower:
                # numpy's int64 difference, then float64 division (not Python's exact one).
                out.append(float(as_of_ns - int(t_us[upper - 1]) * 1000) / DAY_NS)
            else:
                out.append(_NAN)
        return out

    def column(self, name: str, kind: str, f32: bool) -> None:
        """Convert feature ``name`` to per-row Python values (once per call).

        Raises:
            Unsupported: The array is not of the kind the rules were compiled for.
        """
        if name in self.cols:
            return
        values = self.arrays[name]
        if isinstance(values, Coded):
            if kind != STR:
                raise Unsupported(name)
            cats = category_strings(values.categories)
            self.cols[name] = [None if c < 0 else cats[c] for c in values.codes.tolist()]
        elif isinstance(values, np.ndarray):
            if kind == BOOL and values.dtype == np.bool_:
                self.cols[name] = values.tolist()
            elif kind == NUM and values.dtype != np.bool_ and f32 == (values.dtype == np.float32):
                if values.dtype.kind != "f":
                    values = values.astype(np.float64)
                self.cols[name] = values.tolist()
            else:
                raise Unsupported(name)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)) and kind == STR:
            self.cols[name] = values.to_pylist()
        else:
            raise Unsupported(name)
