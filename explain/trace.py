"""Trace one rule expression for one customer: every clause with its inputs and result.

A rule is evaluated by the engine's own interpreter (:func:`tags.rules.evaluate_node`)
over a one-row context, node by node, so each comparison is shown with the customer's
value and the threshold it was compared with. Population aggregates (``median(x)``,
``quantile(x, q)``...) cannot be computed from one row: they are resolved beforehand
(:mod:`explain.rules`) and put into the scope's aggregate cache, which is exactly where
the interpreter looks them up, so the trace uses the numbers the run used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tags.rules import Rule, Scope, ast
from tags.rules.evaluate import evaluate_node
from tags.rules.functions import FUNCTIONS
from tags.rules.values import BOOL, DATE, NULL, NUM, STR, Val

__all__ = [
    "Clause",
    "Term",
    "aggregate_calls",
    "aggregate_key",
    "scalar",
    "snippet",
    "trace_rule",
]


def snippet(text: str, node: ast.Node) -> str:
    """The part of ``text`` that ``node`` was parsed from."""
    return text[node.column - 1 : node.column - 1 + node.width]


def aggregate_calls(node: ast.Node) -> Iterator[ast.Call]:
    """Every population aggregate call (``median`` ...) in a syntax tree."""
    if isinstance(node, ast.Call):
        if FUNCTIONS[node.func].family == "aggregate":
            yield node
            return
        for arg in node.args:
            yield from aggregate_calls(arg)
        return
    for child in _children(node):
        yield from aggregate_calls(child)


def aggregate_key(call: ast.Call, rule: Rule) -> tuple[Any, ...]:
    """The key the interpreter caches an aggregate's value under (see ``tags.rules``)."""
    return (call.func, call.column, call.width, rule.text)


def _children(node: ast.Node) -> tuple[ast.Node, ...]:
    if isinstance(node, ast.Not):
        return (node.operand,)
    if isinstance(node, ast.Binary | ast.Compare):
        return (node.left, node.right)
    if isinstance(node, ast.IsNull | ast.In):
        return (node.operand,)
    if isinstance(node, ast.Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, ast.Call):
        return tuple(a for a in node.args if not isinstance(a, ast.Window))
    return ()


def scalar(value: Val) -> Any:
    """The one-row value as plain Python: float, str, bool, ISO date, or ``None`` (null)."""
    if value.kind == NULL:
        return None
    data = value.data
    if not value.is_scalar:
        if value.kind == STR:
            code = int(data[0])
            return None if code < 0 or value.cats is None else str(value.cats[code])
        if value.null is not None and bool(value.null[0]):
            return None
        data = data[0]
    elif value.kind == STR:
        return str(data)
    if value.kind == NUM:
        number = float(data)
        return None if math.isnan(number) else number
    if value.kind == BOOL:
        return bool(data)
    if value.kind == DATE:
        return pd.Timestamp(int(data), tz="UTC").isoformat()
    return data if not isinstance(data, np.generic) else data.item()


@dataclass(frozen=True)
class Term:
    """One input of a clause: a feature, a ``let`` name, a threshold, events or a constant.

    Attributes:
        text: Its text in the rule (e.g. ``median(recency_days)``).
        kind: ``feature``, ``let``, ``threshold`` (a population aggregate), ``events``
            (an event-window count), ``literal`` or ``expression``.
        value: Its value for the customer (``None``: null).
        inputs: For an expression, the features and thresholds it reads.
    """

    text: str
    kind: str
    value: Any
    inputs: tuple[Term, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"text": self.text, "kind": self.kind, "value": self.value}
        if self.inputs:
            out["inputs"] = [t.to_json() for t in self.inputs]
        return out

    def names(self) -> Iterator[str]:
        """Feature names this term reads."""
        if self.kind == "feature":
            yield self.text
        for term in self.inputs:
            yield from term.names()


@dataclass(frozen=True)
class Clause:
    """One clause of a rule for one customer.

    Attributes:
        text: The clause as written.
        op: ``and``, ``or``, ``not``, ``compare`` (with ``operator``), ``between``,
            ``in``, ``is null``, ``test`` (a true/false name or constant) or ``value``
            (a non-boolean expression, e.g. a fact tag's value).
        result: True, False or ``None`` (null: counts as not true); for ``value``
            clauses the value itself.
        terms: Its inputs (operands of a comparison ...).
        children: Sub-clauses of ``and``/``or``/``not``.
        operator: The comparison operator (``<=`` ...) of a ``compare`` clause.
    """

    text: str
    op: str
    result: Any
    terms: tuple[Term, ...] = ()
    children: tuple[Clause, ...] = ()
    operator: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"text": self.text, "op": self.op, "result": self.result}
        if self.operator:
            out["operator"] = self.operator
        if self.terms:
            out["terms"] = [t.to_json() for t in self.terms]
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out

    def feature_names(self) -> set[str]:
        """Every feature this clause (and its sub-clauses) reads."""
        names = {n for t in self.terms for n in t.names()}
        for child in self.children:
            names |= child.feature_names()
        return names


def trace_rule(rule: Rule, scope: Scope) -> Clause:
    """The clause tree of ``rule`` evaluated for the one row of ``scope``.

    ``scope`` must hold one row, with every aggregate the rule uses already in its
    aggregate cache (see :func:`aggregate_key`).
    """
    return _Tracer(rule, scope.for_rule(rule.text, rule.where)).clause(rule.tree)


class _Tracer:
    def __init__(self, rule: Rule, scope: Scope) -> None:
        self.text = rule.text
        self.scope = scope

    def value(self, node: ast.Node) -> Any:
        return scalar(evaluate_node(node, self.scope))

    def clause(self, node: ast.Node) -> Clause:
        text = snippet(self.text, node)
        result = self.value(node)
        if isinstance(node, ast.Binary) and node.op in ("and", "or"):
            parts = (self.clause(node.left), self.clause(node.right))
            return Clause(text, node.op, result, children=parts)
        if isinstance(node, ast.Not):
            return Clause(text, "not", result, children=(self.clause(node.operand),))
        if isinstance(node, ast.Compare):
            pair = (self.term(node.left), self.term(node.right))
            return Clause(text, "compare", result, terms=pair, operator=node.op)
        if isinstance(node, ast.Between):
            terms = (self.term(node.operand), self.term(node.low), self.term(node.high))
            op = "not between" if node.negated else "between"
            return Clause(text, op, result, terms=terms)
        if isinstance(node, ast.In):
            op = "not in" if node.negated else "in"
            return Clause(text, op, result, terms=(self.term(node.operand),))
        if isinstance(node, ast.IsNull):
            op = "is not null" if node.negated else "is null"
            return Clause(text, op, result, terms=(self.term(node.operand),))
        kind = evaluate_node(node, self.scope).kind
        op = "test" if kind in (BOOL, NULL) else "value"
        return Clause(text, op, result, terms=(self.term(node),))

    def term(self, node: ast.Node) -> Term:
        text = snippet(self.text, node)
        value = self.value(node)
        if isinstance(node, ast.Literal):
            return Term(text, "literal", value)
        if isinstance(node, ast.Name):
            kind = "let" if node.name in self.scope.bindings else "feature"
            return Term(node.name, kind, value)
        if isinstance(node, ast.Call):
            family = FUNCTIONS[node.func].family
            if family == "aggregate":
                return Term(text, "threshold", value)
            if family == "event":
                return Term(text, "events", value)
        return Term(text, "expression", value, inputs=tuple(self.inputs(node)))

    def inputs(self, node: ast.Node) -> Iterator[Term]:
        seen: set[str] = set()
        for term in self._leaves(node):
            if term.text not in seen:
                seen.add(term.text)
                yield term

    def _leaves(self, node: ast.Node) -> Iterator[Term]:
        if isinstance(node, ast.Name):
            yield self.term(node)
            return
        if isinstance(node, ast.Call) and FUNCTIONS[node.func].family != "row":
            yield self.term(node)
            return
        for child in _children(node):
            yield from self._leaves(child)
