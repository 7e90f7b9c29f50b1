"""Rule text -> syntax tree, with errors that quote the rule and point at the column.

The grammar is LALR(1) (``grammar.lark``), so parsing is linear in the rule length and
nothing in the text is ever executed: the tree is data, interpreted by
:mod:`tags.rules.evaluate` over whitelisted operations only.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from tags.errors import RuleSyntaxError
from tags.rules import ast

__all__ = ["MAX_RULE_LENGTH", "parse_rule"]

MAX_RULE_LENGTH = 4000
_MAX_DEPTH = 60

_TOKEN_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "DATE": "a date (YYYY-MM-DD)",
    "UNIT": "'days' or 'weeks'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "the end of the rule",
}


@functools.cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _kids(tree: Tree) -> list[Any]:
    return list(tree.children)


def _pos(item: Tree | Token) -> dict[str, int]:
    if isinstance(item, Token):
        column = item.column or 1
        end = item.end_column or column + 1
    else:
        column = getattr(item.meta, "column", 1) or 1
        end = getattr(item.meta, "end_column", column + 1) or column + 1
    return {"column": column, "width": max(1, end - column)}


_EPOCH = date(1970, 1, 1)
_NS_PER_DAY = 86_400 * 10**9


def _date_ns(token: Token) -> int:
    # The grammar's DATE is exactly YYYY-MM-DD; the standard library (not NumPy) keeps
    # parsing, and so loading a catalogue, free of the array libraries.
    try:
        value = date.fromisoformat(str(token))
    except ValueError as exc:
        raise _Invalid(f"'{token}' is not a valid date (expected YYYY-MM-DD)", token) from exc
    return (value - _EPOCH).days * _NS_PER_DAY


def _days(number: Token, unit: Token) -> float:
    value = float(number)
    return value * 7 if str(unit).lower().startswith("week") else value


class _Invalid(Exception):
    """Raised inside the transformer; turned into RuleSyntaxError with the position."""

    def __init__(self, reason: str, at: Tree | Token) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = _pos(at)


_COMPARE = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">"}
_COMPARE[">="] = ">="


@v_args(tree=True)
class _ToAst(Transformer[Any, ast.Node]):
    def number(self, tree: Tree) -> ast.Literal:
        return ast.Literal("num", float(_kids(tree)[0]), **_pos(tree))

    def neg_number(self, tree: Tree) -> ast.Literal:
        return ast.Literal("num", -float(_kids(tree)[0]), **_pos(tree))

    def string(self, tree: Tree) -> ast.Literal:
        return ast.Literal("str", str(_kids(tree)[0])[1:-1], **_pos(tree))

    def date(self, tree: Tree) -> ast.Literal:
        return ast.Literal("date", _date_ns(_kids(tree)[0]), **_pos(tree))

    def true(self, tree: Tree) -> ast.Literal:
        return ast.Literal("bool", True, **_pos(tree))

    def false(self, tree: Tree) -> ast.Literal:
        return ast.Literal("bool", False, **_pos(tree))

    def null(self, tree: Tree) -> ast.Literal:
        return ast.Literal("null", None, **_pos(tree))

    def name(self, tree: Tree) -> ast.Name:
        return ast.Name(str(_kids(tree)[0]), **_pos(tree))

    def call(self, tree: Tree) -> ast.Call:
        func, *args = _kids(tree)
        present = tuple(a for a in args if a is not None)
        return ast.Call(str(func).lower(), present, **_pos(tree))

    def _binary(self, op: str, tree: Tree) -> ast.Binary:
        left, right = _kids(tree)
        return ast.Binary(op, left, right, **_pos(tree))

    def or_(self, tree: Tree) -> ast.Binary:
        return self._binary("or", tree)

    def and_(self, tree: Tree) -> ast.Binary:
        return self._binary("and", tree)

    def add(self, tree: Tree) -> ast.Binary:
        return self._binary("+", tree)

    def sub(self, tree: Tree) -> ast.Binary:
        return self._binary("-", tree)

    def mul(self, tree: Tree) -> ast.Binary:
        return self._binary("*", tree)

    def div(self, tree: Tree) -> ast.Binary:
        return self._binary("/", tree)

    def mod(self, tree: Tree) -> ast.Binary:
        return self._binary("%", tree)

    def neg(self, tree: Tree) -> ast.Node:
        (operand,) = _kids(tree)
        if isinstance(operand, ast.Literal) and operand.kind == "num":
            return ast.Literal("num", -float(operand.value), **_pos(tree))  # type: ignore[arg-type]
        return ast.Binary("-", ast.Literal("num", 0.0, **_pos(tree)), operand, **_pos(tree))

    def not_(self, tree: Tree) -> ast.Not:
        return ast.Not(_kids(tree)[0], **_pos(tree))

    def comp_op(self, tree: Tree) -> str:
        return _COMPARE[str(_kids(tree)[0])]

    def compare(self, tree: Tree) -> ast.Compare:
        left, op, right = _kids(tree)
        return ast.Compare(op, left, right, **_pos(tree))

    def is_null(self, tree: Tree) -> ast.IsNull:
        return ast.IsNull(_kids(tree)[0], False, **_pos(tree))

    def is_not_null(self, tree: Tree) -> ast.IsNull:
        return ast.IsNull(_kids(tree)[0], True, **_pos(tree))

    def literal_list(self, tree: Tree) -> tuple[ast.Literal, ...]:
        return tuple(_kids(tree))

    def in_(self, tree: Tree) -> ast.In:
        operand, items = _kids(tree)
        return ast.In(operand, items, False, **_pos(tree))

    def not_in(self, tree: Tree) -> ast.In:
        operand, items = _kids(tree)
        return ast.In(operand, items, True, **_pos(tree))

    def between(self, tree: Tree) -> ast.Between:
        operand, low, high = _kids(tree)
        return ast.Between(operand, low, high, False, **_pos(tree))

    def not_between(self, tree: Tree) -> ast.Between:
        operand, low, high = _kids(tree)
        return ast.Between(operand, low, high, True, **_pos(tree))

    def last_window(self, tree: Tree) -> ast.Window:
        number, unit = _kids(tree)
        days = _days(number, unit)
        if days <= 0:
            raise _Invalid(f"'last {number} {unit}' must cover at least one day", tree)
        return ast.Window("relative", days, 0.0, **_pos(tree))

    def ago_window(self, tree: Tree) -> ast.Window:
        far, near, unit = _kids(tree)
        start, end = _days(far, unit), _days(near, unit)
        if start <= end:
            raise _Invalid(
                f"'from {far} to {near} {unit} ago' must start further back than it ends "
                f"(expected the first number > the second; got {far} <= {near})",
                tree,
            )
        return ast.Window("relative", start, end, **_pos(tree))

    def date_window(self, tree: Tree) -> ast.Window:
        first, second = _kids(tree)
        start, end = _date_ns(first), _date_ns(second)
        if start >= end:
            raise _Invalid(
                f"'from {first} to {second}' must go forward in time (expected {first} < {second})",
                tree,
            )
        return ast.Window("absolute", start, end, **_pos(tree))

    def since_window(self, tree: Tree) -> ast.Window:
        return ast.Window("absolute", _date_ns(_kids(tree)[0]), None, **_pos(tree))


def _depth_ok(text: str) -> bool:
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
            if depth > _MAX_DEPTH:
                return False
        elif char == ")":
            depth -= 1
    return True


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e.strip("_").lower()) for e in expected})
    if len(names) > 8:
        return "an operator, value or ')'"
    return ", ".join(names)


def parse_rule(text: str, *, where: str = "") -> ast.Node:
    """Parse one rule into its syntax tree.

    Args:
        text: The rule, e.g. ``"count(browse, last 30 days) = 0 and frequency_orders >= 3"``.
        where: What the rule belongs to, prefixed to error messages.

    Raises:
        RuleSyntaxError: The text is empty, too long, too deeply nested or does not
            parse; the message quotes the rule and points at the column.
    """
    if not isinstance(text, str):
        raise RuleSyntaxError(
            f"Expected the rule as text. Got {type(text).__name__} instead.", where=where
        )
    if not text.strip():
        raise RuleSyntaxError("Expected a rule. Got empty text.", where=where)
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(
            f"Expected a rule of at most {MAX_RULE_LENGTH} characters. Got {len(text)}.",
            where=where,
        )
    if not _depth_ok(text):
        raise RuleSyntaxError(
            f"Expected at most {_MAX_DEPTH} nested parentheses. Got more.", text=text, where=where
        )
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as exc:
        at = exc.pos_in_stream or 0
        char = text[at] if at < len(text) else ""
        raise RuleSyntaxError(
            f"Unexpected character {char!r} at column {exc.column}.",
            text=text,
            column=exc.column,
            where=where,
        ) from None
    except UnexpectedEOF as exc:
        raise RuleSyntaxError(
            f"The rule ends too early: expected {_describe_expected(set(exc.expected))}.",
            text=text,
            column=len(text.rstrip()) + 1,
            where=where,
        ) from None
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        expected = set(getattr(exc, "expected", set()) or set())
        if token is not None and token.type == "$END":
            raise RuleSyntaxError(
                f"The rule ends too early: expected {_describe_expected(expected)}.",
                text=text,
                column=len(text.rstrip()) + 1,
                where=where,
            ) from None
        got = "the end of the rule" if token is None or token.type == "$END" else repr(str(token))
        column = exc.column if isinstance(exc.column, int) and exc.column > 0 else None
        if column is None:
            column = len(text.rstrip()) + 1
        raise RuleSyntaxError(
            f"Expected {_describe_expected(expected)} at column {column}. Got {got} instead.",
            text=text,
            column=column,
            where=where,
            width=len(str(token)) if token is not None and token.type != "$END" else 1,
        ) from None
    except LarkError as exc:
        raise RuleSyntaxError(f"Cannot parse the rule: {exc}", text=text, where=where) from None
    try:
        node: ast.Node = _ToAst().transform(tree)
    except _Invalid as exc:
        raise RuleSyntaxError(exc.reason, text=text, where=where, **exc.pos) from None
    except LarkError as exc:
        # VisitError wraps exceptions raised in the transformer.
        inner = exc.orig_exc if hasattr(exc, "orig_exc") else exc
        if isinstance(inner, _Invalid):
            raise RuleSyntaxError(inner.reason, text=text, where=where, **inner.pos) from None
        raise RuleSyntaxError(f"Cannot parse the rule: {inner}", text=text, where=where) from None
    return node
