"""Syntax tree of the rule language: plain frozen dataclasses, no behaviour.

Every node carries the 1-based ``column`` and ``width`` of its text so errors found
after parsing (unknown names, type mismatches) can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Between",
    "Binary",
    "Call",
    "Compare",
    "In",
    "IsNull",
    "Literal",
    "Name",
    "Node",
    "Not",
    "Window",
]


@dataclass(frozen=True)
class Node:
    """Base of every node: where it sits in the rule text."""

    column: int = field(default=1, kw_only=True)
    width: int = field(default=1, kw_only=True)


@dataclass(frozen=True)
class Literal(Node):
    """A constant: ``kind`` is num, str, date (value: ns since epoch, UTC), bool or null."""

    kind: str
    value: object


@dataclass(frozen=True)
class Name(Node):
    """A column of the frame (feature, tag value) or a ``let`` name."""

    name: str


@dataclass(frozen=True)
class Not(Node):
    """Logical negation (three-valued: not null is null)."""

    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    """Arithmetic (``+ - * / %``) or logic (``and``, ``or``)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare(Node):
    """A comparison; ``op`` is one of ``= != < <= > >=``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class IsNull(Node):
    """``x is null`` (``negated``: ``x is not null``)."""

    operand: Node
    negated: bool


@dataclass(frozen=True)
class In(Node):
    """``x in (a, b, ...)`` over literals (``negated``: ``not in``)."""

    operand: Node
    items: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Between(Node):
    """``x between low and high``, both ends included (``negated``: ``not between``)."""

    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(frozen=True)
class Window(Node):
    """A time window of an event function, as a half-open interval ``[start, end)``.

    ``kind`` is ``relative`` (``start``/``end`` are days before as_of; ``end`` may be 0)
    or ``absolute`` (``start``/``end`` are ns since epoch, UTC; ``end`` ``None`` means
    as_of, for ``since DATE``).
    """

    kind: str
    start: float | int
    end: float | int | None


@dataclass(frozen=True)
class Call(Node):
    """A call of a whitelisted function; ``args`` may hold one :class:`Window`."""

    func: str
    args: tuple[Node, ...]
