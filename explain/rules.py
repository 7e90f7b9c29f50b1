"""Why a rule or fact tag has its value for one customer: :func:`trace_tag`.

The trace follows the engine (:func:`tags.engine.evaluate_tag`) step by step: the
tag's scope, its ``let`` names, then its condition, cases (first match wins, then
``else``) or value expression. Population thresholds (``median(recency_days)`` ...) are
numbers of the whole population on the as-of date: a tagging run records those it used
(:func:`tags.engine.evaluate_tag` returns them, the run keeps them in its metadata), and
:func:`population_thresholds` recomputes them from a feature frame of everyone when a
run did not record them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from explain.errors import ExplainError
from explain.trace import Clause, aggregate_calls, aggregate_key, snippet, trace_rule
from features.events import PreparedEvents
from tags.catalogue import CompiledTag
from tags.rules import EvalContext, Rule, Scope, ast, event_needs, to_ns, truth
from tags.rules.evaluate import evaluate_node
from tags.rules.functions import event_filter
from tags.rules.values import NULL, NUM, Val, from_series

__all__ = [
    "WINDOW_PREFIX",
    "CaseTrace",
    "RuleColumns",
    "TagTrace",
    "needed_columns",
    "population_thresholds",
    "thresholds_used",
    "trace_tag",
    "trace_tags",
    "window_columns",
]

# Columns holding event-window values ("@window:count(complaint, last 90 days)") that a
# service precomputes for its snapshot, so a trace needs no raw events.
WINDOW_PREFIX = "@window:"


@dataclass(frozen=True)
class CaseTrace:
    """One branch of a rule: a case of an ordinal tag, or a boolean tag's condition.

    Attributes:
        value: The value it gives.
        clause: The condition for this customer.
        matched: Whether this branch gave the customer's value.
        reached: Whether the engine got to it (false after the first match).
    """

    value: str
    clause: Clause
    matched: bool
    reached: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "value": self.value,
            "matched": self.matched,
            "reached": self.reached,
            "clause": self.clause.to_json(),
        }


@dataclass(frozen=True)
class TagTrace:
    """Why one rule or fact tag has its value for one customer.

    Attributes:
        tag_id: The tag.
        version: ``tag@version`` of the definition traced.
        value: The value the rule gives (``None``: no row, i.e. false or out of scope).
        in_scope: Whether the customer is in the tag's scope.
        scope: The scope condition (``None``: everyone).
        lets: ``let`` names with their clauses, in order.
        cases: The condition of a boolean tag, or the cases of an ordinal tag.
        else_value: The value when no case matches (``None``: no ``else``).
        value_clause: The value expression of a fact-style tag.
        thresholds: Population thresholds used (text -> number).
    """

    tag_id: str
    version: str
    value: str | None
    in_scope: bool
    scope: Clause | None = None
    lets: tuple[tuple[str, Clause], ...] = ()
    cases: tuple[CaseTrace, ...] = ()
    else_value: str | None = None
    value_clause: Clause | None = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def clauses(self) -> list[Clause]:
        """Every top-level clause of the trace."""
        out = [self.scope] if self.scope is not None else []
        out += [c for _, c in self.lets]
        out += [c.clause for c in self.cases]
        if self.value_clause is not None:
            out.append(self.value_clause)
        return out

    def feature_names(self) -> set[str]:
        """Every feature the trace shows."""
        names: set[str] = set()
        for clause in self.clauses():
            names |= clause.feature_names()
        return names

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {
            "tag_id": self.tag_id,
            "version": self.version,
            "value": self.value,
            "in_scope": self.in_scope,
        }
        if self.scope is not None:
            out["scope"] = self.scope.to_json()
        if self.lets:
            out["lets"] = [{"name": n, "clause": c.to_json()} for n, c in self.lets]
        if self.cases:
            out["cases"] = [c.to_json() for c in self.cases]
        if self.else_value is not None:
            out["else"] = self.else_value
        if self.value_clause is not None:
            out["value_clause"] = self.value_clause.to_json()
        if self.thresholds:
            # NaN (an empty population) is not JSON: null, as for any missing number.
            out["thresholds"] = {k: (v if v == v else None) for k, v in self.thresholds.items()}
        return out


def _rules(compiled: CompiledTag) -> list[Rule]:
    return list(compiled.rules())


def thresholds_used(
    compiled: CompiledTag, aggregates: Mapping[tuple[Any, ...], Val]
) -> dict[str, float]:
    """Text -> number of the aggregates in a scope's cache after evaluating ``compiled``."""
    out: dict[str, float] = {}
    for rule in _rules(compiled):
        for call in aggregate_calls(rule.tree):
            value = aggregates.get(aggregate_key(call, rule))
            if value is not None and value.kind == NUM:
                out[snippet(rule.text, call)] = float(value.data)
    return out


def population_thresholds(
    compiled: CompiledTag,
    features: pd.DataFrame,
    *,
    events: pd.DataFrame | PreparedEvents | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> dict[str, float]:
    """The population thresholds of ``compiled`` over every row of ``features``.

    The same numbers the engine computes: each aggregate over the tag's scope (every
    row without one), after its ``let`` names. Tags without aggregates cost nothing.
    """
    rules = _rules(compiled)
    if not any(True for r in rules for _ in aggregate_calls(r.tree)):
        return {}
    needs = event_needs(rules, None if as_of is None else to_ns(as_of))
    ctx = EvalContext(features, events=events, as_of=as_of, event_needs=needs)
    population = None
    if compiled.scope is not None:
        population = _mask(compiled.scope.evaluate(Scope(ctx)), ctx.n)
    scope = Scope(ctx, population=population)
    for name, rule in compiled.lets:
        scope.bindings[name] = rule.evaluate(scope)
    for rule in rules:
        for call in aggregate_calls(rule.tree):
            evaluate_node(call, scope.for_rule(rule.text, rule.where))
    return thresholds_used(compiled, scope.aggregates)


def _mask(value: Val, n: int) -> np.ndarray:
    if value.kind == NULL:
        return np.zeros(n, dtype=bool)
    return truth(value, n)


# Rule -> its aggregate calls with their texts: a trace per request walked each rule's
# tree twice for them; rules are immutable once compiled, so the walk is done once.
_AGGREGATES: dict[int, tuple[Rule, list[tuple[ast.Call, str]]]] = {}


def _aggregates(rule: Rule) -> list[tuple[ast.Call, str]]:
    cached = _AGGREGATES.get(id(rule))
    if cached is None or cached[0] is not rule:
        if len(_AGGREGATES) > 4096:  # catalogues reloaded many times: start over
            _AGGREGATES.clear()
        cached = (rule, [(c, snippet(rule.text, c)) for c in aggregate_calls(rule.tree)])
        _AGGREGATES[id(rule)] = cached
    return cached[1]


def _prefill(compiled: CompiledTag, scope: Scope, thresholds: Mapping[str, float]) -> None:
    for rule in _rules(compiled):
        for call, text in _aggregates(rule):
            if text not in thresholds:
                raise ExplainError(
                    f"Expected the population threshold {text!r} of tag "
                    f"'{compiled.tag.id}' (recorded by the tagging run, or computed from "
                    f"everyone's features). Got thresholds for {sorted(thresholds)}."
                )
            scope.aggregates[aggregate_key(call, rule)] = Val(NUM, float(thresholds[text]))


def trace_tag(
    compiled: CompiledTag,
    row: pd.DataFrame,
    *,
    thresholds: Mapping[str, float] | None = None,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> TagTrace:
    """Why ``compiled`` gives its value to the customer of the one-row frame ``row``.

    Args:
        compiled: The catalogue's compiled tag (rule or fact tag).
        row: One feature row (``customer_id`` and the features), optionally with the
            customer's event-window values in :data:`WINDOW_PREFIX` columns (see
            :func:`window_columns`) instead of ``events``.
        thresholds: The tag's population thresholds, text -> number (see
            :func:`population_thresholds`); needed when the rule uses aggregates.
        events: The customer's canonical events, for event-window functions.
        as_of: The evaluation time (needed with events).

    Raises:
        ExplainError: ``row`` is not one row, or a threshold is missing.
    """
    [trace] = trace_tags([compiled], row, {compiled.tag.id: thresholds or {}}, events, as_of)
    return trace


def trace_tags(
    tags: Sequence[CompiledTag],
    row: pd.DataFrame,
    thresholds: Mapping[str, Mapping[str, float]],
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> list[TagTrace]:
    """:func:`trace_tag` of several tags over one shared context (columns converted once).

    Raises:
        ExplainError: ``row`` is not one row, or a threshold is missing.
    """
    if len(row) != 1:
        raise ExplainError(f"Expected one feature row to explain. Got {len(row)}.")
    rules = [r for c in tags for r in c.rules()]
    needs = event_needs(rules, None if as_of is None else to_ns(as_of))
    frame = row if row.index[0] == 0 else row.reset_index(drop=True)
    ctx = EvalContext(frame, events=events, as_of=as_of, event_needs=needs)
    if events is None:
        _prefill_windows(ctx, rules, frame)
    return [_trace(c, ctx, thresholds.get(c.tag.id) or {}) for c in tags]


# The frame of a context whose columns are all preset: one row, no column of its own.
_ONE_ROW = pd.DataFrame(index=pd.RangeIndex(1))


class RuleColumns:
    """The columns traces of ``tags`` read from ``frame``, converted to rule values once.

    :func:`trace_tags` converts the columns of the one-row frame it is given, which costs
    a pandas column read per feature and per call. A service explaining one customer of
    the same snapshot per request builds this once per snapshot instead; each trace then
    takes one-row slices of the converted arrays (numpy views; nothing is written to
    them: the interpreter never modifies its operands, and the arrays are read-only so
    a change there would fail instead of corrupting later traces).

    Args:
        tags: Every compiled tag that may be traced.
        frame: One row per customer: features plus precomputed event windows
            (:data:`WINDOW_PREFIX` columns, see :func:`window_columns`).
    """

    def __init__(self, tags: Sequence[CompiledTag], frame: pd.DataFrame) -> None:
        names: set[str] = set()
        self._windows: dict[tuple[Any, ...], Val] = {}
        for compiled in tags:
            lets = {name for name, _ in compiled.lets}
            for rule in compiled.rules():
                names |= set(rule.name_set) - lets
                for call in rule.event_calls:
                    column = WINDOW_PREFIX + snippet(rule.text, call)
                    if column in frame.columns:
                        values = frame[column].to_numpy(dtype="float64")
                        self._windows[_window_key(call)] = _read_only(Val(NUM, values))
        self._columns = {
            str(c): _read_only(from_series(frame[c])) for c in frame.columns if c in names
        }

    def trace(
        self,
        tags: Sequence[CompiledTag],
        pos: int,
        thresholds: Mapping[str, Mapping[str, float]],
    ) -> list[TagTrace]:
        """:func:`trace_tags` of ``tags`` for row ``pos`` of the frame (same traces)."""
        ctx = EvalContext(_ONE_ROW)
        for name, value in self._columns.items():
            ctx.preset(name, _one(value, pos))
        for key, value in self._windows.items():
            ctx.window_cache[key] = _one(value, pos)
        return [_trace(c, ctx, thresholds.get(c.tag.id) or {}) for c in tags]


def _read_only(value: Val) -> Val:
    """``value`` over read-only views of its arrays (the frame's own stay writable)."""

    def view(array: Any) -> Any:
        if not isinstance(array, np.ndarray):
            return array
        out = array.view()
        out.setflags(write=False)
        return out

    return Val(value.kind, view(value.data), null=view(value.null), cats=value.cats)


def _one(value: Val, pos: int) -> Val:
    """Row ``pos`` of a column value (views; categories shared)."""
    null = None if value.null is None else value.null[pos : pos + 1]
    return Val(value.kind, value.data[pos : pos + 1], null=null, cats=value.cats)


def _trace(compiled: CompiledTag, ctx: EvalContext, thresholds: Mapping[str, float]) -> TagTrace:
    tag = compiled.tag
    given = dict(thresholds)
    base = Scope(ctx)
    _prefill(compiled, base, given)
    scope_clause = None
    in_scope = True
    if compiled.scope is not None:
        scope_clause = trace_rule(compiled.scope, base)
        in_scope = scope_clause.result is True
    scope = Scope(ctx, population=np.array([in_scope]))
    scope.aggregates = base.aggregates
    lets = []
    for name, rule in compiled.lets:
        lets.append((name, trace_rule(rule, scope)))
        scope.bindings[name] = rule.evaluate(scope)
    used = {k: v for k, v in given.items() if any(k == t for t in _texts(compiled))}
    common = TagTrace(
        tag_id=tag.id,
        version=tag.version_label,
        value=None,
        in_scope=in_scope,
        scope=scope_clause,
        lets=tuple(lets),
        thresholds=used,
    )
    if compiled.when is not None:
        clause = trace_rule(compiled.when, scope)
        hit = in_scope and clause.result is True
        case = CaseTrace("true", clause, matched=hit, reached=in_scope)
        return replace(common, value="true" if hit else None, cases=(case,))
    if compiled.cases:
        traced = []
        value = None
        for case_value, rule in compiled.cases:
            clause = trace_rule(rule, scope)
            reached = in_scope and value is None
            matched = reached and clause.result is True
            if matched:
                value = case_value
            traced.append(CaseTrace(case_value, clause, matched=matched, reached=reached))
        else_value = tag.rule.else_ if tag.rule is not None else None
        if in_scope and value is None:
            value = else_value
        return replace(common, value=value, cases=tuple(traced), else_value=else_value)
    assert compiled.value is not None
    clause = trace_rule(compiled.value, scope)
    result = clause.result if in_scope and isinstance(clause.result, str) else None
    return replace(common, value=result, value_clause=clause)


def _texts(compiled: CompiledTag) -> set[str]:
    return {text for r in _rules(compiled) for _, text in _aggregates(r)}


def _window_key(call: ast.Call) -> tuple[Any, ...]:
    """The key the interpreter caches an event window's value under (``tags.rules``)."""
    first = call.args[0]
    assert isinstance(first, ast.Name)
    categories = None
    window = None
    for arg in call.args[1:]:
        if isinstance(arg, ast.Window):
            window = arg
        else:
            categories = event_filter(arg)
    return (call.func, first.name, categories, window and (window.kind, window.start, window.end))


def _prefill_windows(ctx: EvalContext, rules: Iterable[Rule], frame: pd.DataFrame) -> None:
    for rule in rules:
        for call in rule.event_calls:
            column = WINDOW_PREFIX + snippet(rule.text, call)
            if column in frame.columns:
                values = frame[column].to_numpy(dtype="float64")
                ctx.window_cache[_window_key(call)] = Val(NUM, values)


def needed_columns(tags: Iterable[CompiledTag], columns: Iterable[str]) -> list[str]:
    """The columns of a feature frame that traces of ``tags`` read (narrow rows are
    cheaper to slice and convert): the id, the names the rules read, the windows."""
    wanted = {"customer_id"}
    for compiled in tags:
        lets = {name for name, _ in compiled.lets}
        for rule in compiled.rules():
            wanted |= set(rule.name_set) - lets
            wanted |= {WINDOW_PREFIX + snippet(rule.text, c) for c in rule.event_calls}
    return [c for c in columns if c in wanted]


def window_columns(
    compiled: Iterable[CompiledTag],
    features: pd.DataFrame,
    events: pd.DataFrame | PreparedEvents,
    *,
    as_of: pd.Timestamp | str,
) -> pd.DataFrame:
    """Every event-window value the tags' rules read, per row of ``features``.

    One column per distinct window call, named :data:`WINDOW_PREFIX` + its text,
    computed by the engine over everyone at once; :func:`trace_tags` reads them when
    it is given no events.
    """
    rules = [r for c in compiled for r in c.rules()]
    needs = event_needs(rules, to_ns(as_of))
    ctx = EvalContext(features, events=events, as_of=as_of, event_needs=needs)
    out: dict[str, np.ndarray] = {}
    for rule in rules:
        scope = Scope(ctx).for_rule(rule.text, rule.where)
        for call in rule.event_calls:
            column = WINDOW_PREFIX + snippet(rule.text, call)
            if column not in out:
                out[column] = np.asarray(evaluate_node(call, scope).data, dtype="float64")
    return pd.DataFrame(out, index=features.index)
