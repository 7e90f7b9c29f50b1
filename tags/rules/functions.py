"""The vectorised implementations of the functions a rule may call.

The whitelist itself (names, arity, family) is :mod:`tags.rules.signatures`, which
compiling needs without NumPy or pandas. Three families:

* row-wise: ``abs(x)``, ``round(x[, digits])``, ``coalesce(x, y, ...)``,
  ``least(x, y, ...)``, ``greatest(x, y, ...)`` (the last two ignore nulls);
* aggregates over the tag's population (its ``scope``, else every row), returning one
  number for everyone: ``median(x)``, ``mean(x)``, ``min(x)``, ``max(x)``,
  ``quantile(x, q)``;
* event windows over raw events before ``as_of``: ``count(TYPE, ...)``,
  ``sum(TYPE, ...)`` (sum of ``amount``), ``days_since(TYPE, ...)`` (days since the
  latest such event; null if none), each with an optional category filter
  (``category = "shoes"`` or ``category in ("a", "b")``) and an optional window
  (``last 30 days``, ``from 54 to 30 days ago``, ``from 2021-10-05 to 2021-10-28``,
  ``since 2021-10-05``).

Arguments are evaluated through the ``evaluate`` callable the interpreter passes in
(:func:`tags.rules.evaluate.evaluate_node`), so this module sits below the interpreter
instead of importing it back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from tags.rules import ast
from tags.rules.context import Scope, population_mask
from tags.rules.signatures import FUNCTIONS, FunctionSpec, event_filter
from tags.rules.values import NUM, STR, Val

__all__ = ["FUNCTIONS", "Evaluator", "FunctionSpec", "call_function", "event_filter"]

# Evaluates one argument's syntax tree over every row of a scope.
Evaluator = Callable[[ast.Node, Scope], Val]


def _event_parts(call: ast.Call) -> tuple[str, tuple[str, ...] | None, ast.Window | None]:
    # The compiler has checked the shape: TYPE first, then a filter and/or a window.
    first = call.args[0]
    assert isinstance(first, ast.Name)
    categories: tuple[str, ...] | None = None
    window: ast.Window | None = None
    for arg in call.args[1:]:
        if isinstance(arg, ast.Window):
            window = arg
        else:
            categories = event_filter(arg)
    return first.name, categories, window


def _event_call(call: ast.Call, scope: Scope) -> Val:
    event_type, categories, window = _event_parts(call)
    ctx = scope.ctx
    key = (call.func, event_type, categories, window and (window.kind, window.start, window.end))
    cached = ctx.window_cache.get(key)
    if cached is not None:
        return cached
    index = ctx.events(call, scope.text, scope.where)
    out = index.aggregate(call.func, event_type, window, categories)
    value = Val(NUM, out)
    ctx.window_cache[key] = value
    return value


def _numbers(call: ast.Call, scope: Scope, evaluate: Evaluator) -> list[Val]:
    values = []
    for arg in call.args:
        value = evaluate(arg, scope)
        if value.kind == "null":
            value = Val(NUM, float("nan"))
        if value.kind != NUM:
            raise scope.type_error(
                arg, f"{FUNCTIONS[call.func].signature} needs numbers. Got a {value.kind} value."
            )
        values.append(value)
    return values


def _aggregate(call: ast.Call, scope: Scope, evaluate: Evaluator) -> Val:
    key = (call.func, call.column, call.width, scope.text)
    if key in scope.aggregates:
        return scope.aggregates[key]
    text = scope.text[call.column - 1 : call.column - 1 + call.width]
    pinned = scope.ctx.pinned.get(scope.label, {}).get(text) if scope.ctx.pinned else None
    inputs = scope.ctx.aggregate_inputs
    if pinned is not None and inputs is None:
        value = Val(NUM, float(pinned))
        scope.aggregates[key] = value
        return value
    (target, *rest) = _numbers(call, scope, evaluate)
    q_value: float | None = None
    if call.func == "quantile":
        q = rest[0]
        if not q.is_scalar or not 0.0 <= float(q.data) <= 1.0:
            raise scope.type_error(
                call.args[1], "quantile(x, q) needs a constant q between 0 and 1."
            )
        q_value = float(q.data)
    if target.is_scalar:
        result = float(target.data)
    else:
        values = target.data[population_mask(scope) & ~np.isnan(target.data)]
        if inputs is not None:  # a distributed run computes the aggregate over all parts
            inputs[(scope.label, text)] = (call.func, q_value, values)
        if not len(values):
            result = float("nan")
        elif call.func == "median":
            result = float(np.median(values))
        elif call.func == "mean":
            result = float(np.mean(values))
        elif call.func == "min":
            result = float(np.min(values))
        elif call.func == "max":
            result = float(np.max(values))
        else:
            assert q_value is not None
            result = float(np.quantile(values, q_value))
    value = Val(NUM, result if pinned is None else float(pinned))
    scope.aggregates[key] = value
    return value


def _coalesce(call: ast.Call, scope: Scope, evaluate: Evaluator) -> Val:
    values = [evaluate(arg, scope) for arg in call.args]
    kinds = {v.kind for v in values} - {"null"}
    if len(kinds) > 1:
        raise scope.type_error(call, "coalesce() needs arguments of one type. Got a mix.")
    kind = kinds.pop() if kinds else NUM
    n = scope.ctx.n
    if kind == NUM:
        out = np.full(n, np.nan)
        for value in reversed(values):
            if value.kind == "null":
                continue
            data = np.broadcast_to(np.asarray(value.data, dtype="float64"), (n,))
            out = np.where(np.isnan(data), out, data)
        return Val(NUM, out)
    if kind == STR:
        strings = np.full(n, None, dtype=object)
        for value in reversed(values):
            if value.kind == "null":
                continue
            decoded = value.strings() if not value.is_scalar else np.full(n, value.data)
            strings = np.where(decoded == None, strings, decoded)  # noqa: E711
        codes, uniques = pd.factorize(strings, use_na_sentinel=True)
        return Val(STR, codes.astype(np.int64), cats=np.array([str(u) for u in uniques], object))
    raise scope.type_error(call, f"coalesce() supports numbers and strings. Got {kind} values.")


def call_function(call: ast.Call, scope: Scope, evaluate: Evaluator) -> Val:
    """Evaluate a call of a whitelisted function (the compiler has checked name and arity).

    Args:
        call: The call's syntax tree.
        scope: The rows and names it is evaluated for.
        evaluate: How to evaluate an argument (the interpreter's ``evaluate_node``).
    """
    spec = FUNCTIONS[call.func]
    if spec.family == "event":
        return _event_call(call, scope)
    if spec.family == "aggregate":
        return _aggregate(call, scope, evaluate)
    if call.func == "coalesce":
        return _coalesce(call, scope, evaluate)
    values = _numbers(call, scope, evaluate)
    with np.errstate(invalid="ignore"):
        if call.func == "abs":
            data = np.abs(values[0].data)
        elif call.func == "round":
            digits = 0
            if len(values) == 2:
                if not values[1].is_scalar:
                    raise scope.type_error(call.args[1], "round(x, digits) needs constant digits.")
                digits = int(values[1].data)
            data = np.round(values[0].data, digits)
        else:
            reducer = np.fmin if call.func == "least" else np.fmax
            data = values[0].data
            for value in values[1:]:
                data = reducer(data, value.data)
    if not np.ndim(data):
        return Val(NUM, float(data))
    return Val(NUM, np.asarray(data, dtype="float64"))
