"""Which functions a rule may call, with their arity, family and signature.

Only what compiling a rule needs (checking calls), without the vectorised
implementations in :mod:`tags.rules.functions`: compiling stays free of NumPy and
pandas, so loading a catalogue (``tagsmith tags list``, ``init``) starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from tags.rules import ast

__all__ = ["FUNCTIONS", "FunctionSpec", "event_filter"]


@dataclass(frozen=True)
class FunctionSpec:
    """Arity and family of a whitelisted function."""

    family: str  # "row" | "aggregate" | "event"
    min_args: int
    max_args: int | None
    signature: str


FUNCTIONS: dict[str, FunctionSpec] = {
    "abs": FunctionSpec("row", 1, 1, "abs(x)"),
    "round": FunctionSpec("row", 1, 2, "round(x[, digits])"),
    "coalesce": FunctionSpec("row", 2, None, "coalesce(x, y, ...)"),
    "least": FunctionSpec("row", 2, None, "least(x, y, ...)"),
    "greatest": FunctionSpec("row", 2, None, "greatest(x, y, ...)"),
    "median": FunctionSpec("aggregate", 1, 1, "median(x)"),
    "mean": FunctionSpec("aggregate", 1, 1, "mean(x)"),
    "min": FunctionSpec("aggregate", 1, 1, "min(x)"),
    "max": FunctionSpec("aggregate", 1, 1, "max(x)"),
    "quantile": FunctionSpec("aggregate", 2, 2, "quantile(x, q)"),
    "count": FunctionSpec("event", 1, 3, 'count(TYPE[, category = "c"][, WINDOW])'),
    "sum": FunctionSpec("event", 1, 3, 'sum(TYPE[, category = "c"][, WINDOW])'),
    "days_since": FunctionSpec("event", 1, 3, 'days_since(TYPE[, category = "c"][, WINDOW])'),
}


def event_filter(node: ast.Node) -> tuple[str, ...] | None:
    """The categories of a ``category = "c"`` / ``category in (...)`` argument, else None."""
    if (
        isinstance(node, ast.Compare)
        and node.op == "="
        and isinstance(node.left, ast.Name)
        and node.left.name.lower() == "category"
        and isinstance(node.right, ast.Literal)
        and node.right.kind == "str"
    ):
        return (str(node.right.value),)
    if (
        isinstance(node, ast.In)
        and not node.negated
        and isinstance(node.operand, ast.Name)
        and node.operand.name.lower() == "category"
        and all(item.kind == "str" for item in node.items)
    ):
        return tuple(str(item.value) for item in node.items)
    return None
