"""Interpret a rule's syntax tree over a frame of named columns, vectorised with numpy.

Nothing here executes rule text: the tree is walked and every node maps to a fixed
numpy operation. Calls go to :func:`tags.rules.functions.call_function`, which reads
event windows from the context's event index (:mod:`tags.rules.raw_events`, or
:mod:`tags.rules.prepared` for events prepared by feature building).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tags.errors import RuleNameError
from tags.rules import ast
from tags.rules.context import Scope
from tags.rules.functions import call_function
from tags.rules.names import suggest
from tags.rules.values import BOOL, DATE, NULL, NUM, STR, Val
from tags.rules.windows import DAY_NS

__all__ = ["COMPARISONS", "SWAPPED", "evaluate_node"]

# The comparison operators, and each one with its operands swapped (shared with the
# row-by-row closures of tags.rule_rows).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
SWAPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _bool_arrays(value: Val, n: int) -> tuple[np.ndarray, np.ndarray]:
    if value.kind == NULL:
        return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    if value.is_scalar:
        return np.full(n, bool(value.data)), np.zeros(n, dtype=bool)
    null = value.null if value.null is not None else np.zeros(n, dtype=bool)
    return value.data, null


def _bool(data: np.ndarray, null: np.ndarray | None) -> Val:
    if null is not None and not null.any():
        null = None
    return Val(BOOL, data, null=null)


def _need(scope: Scope, node: ast.Node, value: Val, kinds: Iterable[str], what: str) -> None:
    allowed = tuple(kinds)
    if value.kind not in allowed:
        shown = " or ".join(_KIND_NAMES[k] for k in allowed)
        raise scope.type_error(
            node, f"{what} needs {shown}. Got {_KIND_NAMES[value.kind]} instead."
        )


_KIND_NAMES = {
    NUM: "a number",
    BOOL: "a true/false value",
    STR: "a string",
    DATE: "a date",
    NULL: "null",
}


def evaluate_node(node: ast.Node, scope: Scope) -> Val:
    """Evaluate ``node`` over every row of ``scope``'s frame."""
    if isinstance(node, ast.Literal):
        if node.kind == "null":
            return Val(NULL, None)
        return Val(node.kind, node.value)
    if isinstance(node, ast.Name):
        return _name(node, scope)
    if isinstance(node, ast.Not):
        operand = evaluate_node(node.operand, scope)
        _need(scope, node.operand, operand, (BOOL,), "'not'")
        if operand.is_scalar:
            return Val(BOOL, not operand.data)
        if operand.null is None:
            return Val(BOOL, ~operand.data)
        data, null = _bool_arrays(operand, scope.ctx.n)
        return _bool(~data & ~null, operand.null)
    if isinstance(node, ast.Binary):
        if node.op in ("and", "or"):
            return _logic(node, scope)
        return _arith(node, scope)
    if isinstance(node, ast.Compare):
        return _compare(
            node, node.op, evaluate_node(node.left, scope), evaluate_node(node.right, scope), scope
        )
    if isinstance(node, ast.IsNull):
        operand = evaluate_node(node.operand, scope)
        if operand.is_scalar:
            return Val(BOOL, (operand.kind == NULL) != node.negated)
        mask = operand.null_mask(scope.ctx.n)
        return Val(BOOL, ~mask if node.negated else mask.copy())
    if isinstance(node, ast.In):
        return _in(node, scope)
    if isinstance(node, ast.Between):
        operand = evaluate_node(node.operand, scope)
        low = _compare(node, ">=", operand, evaluate_node(node.low, scope), scope)
        high = _compare(node, "<=", operand, evaluate_node(node.high, scope), scope)
        both = _and(low, high, scope.ctx.n)
        if node.negated:
            data, null = _bool_arrays(both, scope.ctx.n)
            return _bool(~data & ~null, null)
        return both
    if isinstance(node, ast.Call):
        return call_function(node, scope, evaluate_node)
    if isinstance(node, ast.Window):
        raise scope.type_error(
            node, "A time window only goes inside count(), sum() or days_since()."
        )
    raise scope.type_error(node, f"Unsupported expression {type(node).__name__}.")


def _name(node: ast.Name, scope: Scope) -> Val:
    if node.name in scope.bindings:
        return scope.bindings[node.name]
    value = scope.ctx.column(node.name)
    if value is None:
        raise RuleNameError(
            f"Unknown name '{node.name}'.{suggest(node.name, scope.ctx.names)}",
            text=scope.text,
            column=node.column,
            width=node.width,
            where=scope.where,
        )
    return value


def _plain(value: Val) -> bool:
    """An array of true/false without nulls (the fast path of the logic operators)."""
    return value.kind == BOOL and not value.is_scalar and value.null is None


def _and(left: Val, right: Val, n: int) -> Val:
    if left.is_scalar and right.is_scalar and NULL not in (left.kind, right.kind):
        return Val(BOOL, bool(left.data) and bool(right.data))
    if _plain(left) and _plain(right):
        return Val(BOOL, left.data & right.data)
    a, an = _bool_arrays(left, n)
    b, bn = _bool_arrays(right, n)
    data = a & b
    a_false = ~a & ~an
    b_false = ~b & ~bn
    return _bool(data, (an | bn) & ~a_false & ~b_false)


def _or(left: Val, right: Val, n: int) -> Val:
    if left.is_scalar and right.is_scalar and NULL not in (left.kind, right.kind):
        return Val(BOOL, bool(left.data) or bool(right.data))
    if _plain(left) and _plain(right):
        return Val(BOOL, left.data | right.data)
    a, an = _bool_arrays(left, n)
    b, bn = _bool_arrays(right, n)
    data = a | b
    return _bool(data, (an | bn) & ~data)


def _logic(node: ast.Binary, scope: Scope) -> Val:
    left = evaluate_node(node.left, scope)
    _need(scope, node.left, left, (BOOL, NULL), f"'{node.op}'")
    right = evaluate_node(node.right, scope)
    _need(scope, node.right, right, (BOOL, NULL), f"'{node.op}'")
    if node.op == "and":
        return _and(left, right, scope.ctx.n)
    return _or(left, right, scope.ctx.n)


def _arith(node: ast.Binary, scope: Scope) -> Val:
    left = evaluate_node(node.left, scope)
    right = evaluate_node(node.right, scope)
    if node.op == "-" and left.kind == DATE and right.kind == DATE:
        with np.errstate(invalid="ignore"):
            days = (np.asarray(left.data, dtype="float64") - np.asarray(right.data)) / DAY_NS
        nulls = left.null_mask(scope.ctx.n) | right.null_mask(scope.ctx.n)
        if not np.ndim(days):
            return Val(NUM, float(days))
        return Val(NUM, np.where(nulls, np.nan, days))
    if NULL in (left.kind, right.kind):
        other = right if left.kind == NULL else left
        _need(scope, node, other, (NUM, NULL), f"'{node.op}'")
        return Val(NUM, np.full(scope.ctx.n, np.nan) if not other.is_scalar else float("nan"))
    _need(scope, node.left, left, (NUM,), f"'{node.op}'")
    _need(scope, node.right, right, (NUM,), f"'{node.op}'")
    a, b = left.data, right.data
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if node.op == "+":
            out = np.add(a, b)
        elif node.op == "-":
            out = np.subtract(a, b)
        elif node.op == "*":
            out = np.multiply(a, b)
        elif node.op == "/":
            out = np.divide(a, b)
        else:
            out = np.mod(a, b)
    if node.op in ("/", "%"):
        # Division by zero is null, as in SQL, rather than an infinity that sorts as a value.
        out = np.where(np.isfinite(out) | np.isnan(out), out, np.nan) if np.ndim(out) else out
        if not np.ndim(out) and not np.isfinite(out):
            out = float("nan")
    if not np.ndim(out):
        return Val(NUM, float(out))
    return Val(NUM, np.asarray(out, dtype="float64"))


def _compare(node: ast.Node, op: str, left: Val, right: Val, scope: Scope) -> Val:
    n = scope.ctx.n
    if NULL in (left.kind, right.kind):
        raise scope.type_error(
            node, "Comparing with null is never true: write 'x is null' or 'x is not null'."
        )
    if left.kind != right.kind:
        raise scope.type_error(
            node,
            f"Cannot compare {_KIND_NAMES[left.kind]} with {_KIND_NAMES[right.kind]}.",
        )
    if left.kind == BOOL and op not in ("=", "!="):
        raise scope.type_error(node, f"True/false values support = and != only. Got '{op}'.")
    if left.is_scalar and right.is_scalar:
        return Val(BOOL, bool(COMPARISONS[op](left.data, right.data)))
    if left.is_scalar:
        left, right, op = right, left, SWAPPED[op]
    if left.kind == STR:
        return _compare_str(op, left, right, n)
    func = COMPARISONS[op]
    data = np.asarray(func(left.data, right.data), dtype=bool)
    null = left.null_mask(n)
    if not right.is_scalar:
        null = null | right.null_mask(n)
    if left.kind == NUM:
        # Comparisons with NaN are already false, except '!=': clear those.
        if op == "!=":
            data &= ~null
        return _bool(data, null)
    return _bool(data & ~null, null)


def _compare_str(op: str, left: Val, right: Val, n: int) -> Val:
    assert left.cats is not None
    func = COMPARISONS[op]
    if right.is_scalar:
        cats = np.asarray(left.cats, dtype=str)
        per_cat = np.asarray(func(cats, str(right.data)), dtype=bool).reshape(-1)
        lookup = np.append(per_cat, False)
        null = left.data < 0
        return _bool(lookup[left.data], null)
    a, b = left.strings(), right.strings()
    null = (left.data < 0) | (right.data < 0)
    fill = np.where(null, "", a).astype(str), np.where(null, "", b).astype(str)
    return _bool(np.asarray(func(*fill), dtype=bool) & ~null, null)


def _in(node: ast.In, scope: Scope) -> Val:
    operand = evaluate_node(node.operand, scope)
    kinds = {item.kind for item in node.items}
    if kinds != {operand.kind}:
        got = ", ".join(sorted(_KIND_NAMES[k] for k in kinds))
        raise scope.type_error(
            node,
            f"'in' needs a list of {_KIND_NAMES.get(operand.kind, operand.kind)}s like the value "
            f"it tests. Got {got}.",
        )
    items = [item.value for item in node.items]
    if operand.is_scalar:
        return Val(BOOL, (operand.data in items) != node.negated)
    if operand.kind == STR:
        assert operand.cats is not None
        per_cat = np.isin(np.asarray(operand.cats, dtype=str), np.asarray(items, dtype=str))
        data = np.append(per_cat, False)[operand.data]
    else:
        data = np.isin(operand.data, np.asarray(items))
    null = operand.null_mask(scope.ctx.n)
    if node.negated:
        data = ~data
    return _bool(data & ~null, null)
