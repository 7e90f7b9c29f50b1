"""What a rule is evaluated against: :class:`EvalContext` (a frame's columns, converted
once, and the events for window functions) and :class:`Scope` (who the rule is
evaluated for, its ``let`` names, and the rule text that errors quote).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from features.events import PreparedEvents
from tags.errors import RuleEvalError, RuleTypeError
from tags.rules import ast
from tags.rules.prepared import PreparedEventIndex
from tags.rules.raw_events import EventIndex
from tags.rules.values import BOOL, DATE, NUM, STR, Val, from_series
from tags.rules.windows import to_ns

__all__ = ["AggregateInputs", "EvalContext", "Scope", "population_mask"]

# (tag id, aggregate text) -> (function, q or None, the values it was computed over).
AggregateInputs = dict[tuple[str, str], tuple[str, float | None, np.ndarray]]


class EvalContext:
    """Columns of one frame, converted once, plus the events for window functions.

    Args:
        frame: One row per customer (features, or tag values for audiences).
        events: Canonical events, for ``count``/``sum``/``days_since`` (optional), or
            the same events prepared by :func:`features.events.prepare_events` (then
            windows are read from its sorted arrays instead of hashing customer ids).
        as_of: The evaluation time; required when ``events`` is given.
        event_needs: Restrict the event index to these types and times (see
            :class:`~tags.rules.raw_events.EventIndex`).
        id_column: The customer id column, used to place events on rows.
        pinned: Population aggregates to use instead of computing them: tag id ->
            aggregate text (``median(recency_days)``) -> value, as a batch run records
            them (``TagValues.thresholds``). A handful of customers re-tagged in real time
            take the last batch run's medians and quantiles, not statistics of themselves.
        aggregate_inputs: When given, every non-constant aggregate records here what it
            was computed from: (tag id, aggregate text) -> (function, q or None, the
            population's non-null values). A partitioned run (the Spark engine) unites
            them over all partitions and pins the results.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        events: pd.DataFrame | PreparedEvents | None = None,
        as_of: pd.Timestamp | str | None = None,
        event_needs: Mapping[str, int] | None = None,
        id_column: str = "customer_id",
        pinned: Mapping[str, Mapping[str, float | None]] | None = None,
        aggregate_inputs: AggregateInputs | None = None,
    ) -> None:
        self.frame = frame
        self.pinned: Mapping[str, Mapping[str, float | None]] = pinned or {}
        self.aggregate_inputs = aggregate_inputs
        self.n = len(frame)
        self.as_of_ns = None if as_of is None else to_ns(as_of)
        self._columns: dict[str, Val] = {}
        self._events = events
        self._event_needs = event_needs
        self._id_column = id_column
        self._event_index: EventIndex | PreparedEventIndex | None = None
        self.window_cache: dict[tuple[Any, ...], Val] = {}

    @classmethod
    def from_kinds(cls, kinds: Mapping[str, str]) -> EvalContext:
        """An empty context whose columns have the given kinds (for load-time type checks)."""
        ctx = cls(pd.DataFrame(), events=None, as_of="2000-01-01")
        for name, kind in kinds.items():
            ctx._columns[name] = _empty(kind)
        ctx._event_index = EventIndex(
            pd.DataFrame(), np.array([], dtype=object), int(ctx.as_of_ns or 0), needs={}
        )
        return ctx

    @property
    def names(self) -> list[str]:
        """Every column name this context can resolve."""
        return sorted(set(self._columns) | {str(c) for c in self.frame.columns})

    def preset(self, name: str, value: Val) -> None:
        """Use ``value`` as column ``name`` instead of converting the frame's.

        A caller that converted a whole population's columns once (a service explaining
        one customer of its snapshot per request) hands each one-row context its slice,
        so no pandas column is read per request.
        """
        self._columns[name] = value

    def column(self, name: str) -> Val | None:
        """The column called ``name`` as a rule value (``None`` if absent)."""
        if name not in self._columns:
            if name not in self.frame.columns:
                return None
            self._columns[name] = from_series(self.frame[name])
        return self._columns[name]

    def events(self, call: ast.Call, text: str, where: str) -> EventIndex | PreparedEventIndex:
        """The event index (built on first use)."""
        if self._event_index is None:
            if self._events is None or self.as_of_ns is None:
                raise RuleEvalError(
                    f"{call.func}() reads events, so the rule needs events and an as_of date. "
                    "Got none.",
                    text=text,
                    column=call.column,
                    width=call.width,
                    where=where,
                )
            ids = self.frame[self._id_column]
            if isinstance(self._events, PreparedEvents):
                self._event_index = PreparedEventIndex(self._events, ids, self.as_of_ns)
            else:
                self._event_index = EventIndex(
                    self._events, ids, self.as_of_ns, needs=self._event_needs
                )
        return self._event_index


def _empty(kind: str) -> Val:
    if kind == NUM:
        return Val(NUM, np.empty(0, dtype="float64"))
    if kind == BOOL:
        return Val(BOOL, np.empty(0, dtype=bool))
    if kind == DATE:
        return Val(DATE, np.empty(0, dtype=np.int64), null=np.empty(0, dtype=bool))
    return Val(STR, np.empty(0, dtype=np.int64), cats=np.array([], dtype=object))


class Scope:
    """Who a rule is evaluated for (``population``, for aggregates) and its ``let`` names."""

    def __init__(
        self,
        ctx: EvalContext,
        *,
        population: np.ndarray | None = None,
        bindings: Mapping[str, Val] | None = None,
        text: str = "",
        where: str = "",
        label: str = "",
    ) -> None:
        self.ctx = ctx
        self.label = label
        self.population = population
        self.bindings: dict[str, Val] = dict(bindings or {})
        self.text = text
        self.where = where
        self.aggregates: dict[tuple[Any, ...], Val] = {}

    def for_rule(self, text: str, where: str) -> Scope:
        """The same scope (sharing aggregates) reporting errors for another rule text."""
        other = Scope(
            self.ctx, population=self.population, bindings=self.bindings, label=self.label
        )
        other.aggregates = self.aggregates
        other.text, other.where = text, where
        return other

    def type_error(self, node: ast.Node, reason: str) -> RuleTypeError:
        """A type error pointing at ``node``."""
        return RuleTypeError(
            reason, text=self.text, column=node.column, width=node.width, where=self.where
        )


def population_mask(scope: Scope) -> np.ndarray:
    """Rows aggregates are computed over (the tag's scope, else every row)."""
    if scope.population is None:
        return np.ones(scope.ctx.n, dtype=bool)
    return scope.population
