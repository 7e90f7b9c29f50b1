"""The rule language: safe, vectorised expressions over named columns and raw events.

``compile_rule(text, names=...)`` parses and checks a rule; ``Rule.mask(frame, ...)``
evaluates it over every row at once. See the README section "Rule language".

Compiling imports no array library; the interpreter's names (``EvalContext``,
``Scope``, ``EventIndex``, ``Val``, ``truth``, ``to_ns``) are imported on first use, so
that loading a catalogue does not pay for NumPy, pandas and PyArrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tags.rules.compile import Rule, compile_rule, event_needs, frame_kinds
from tags.rules.names import suggest
from tags.rules.parser import parse_rule
from tags.rules.signatures import FUNCTIONS

if TYPE_CHECKING:
    from tags.rules.context import EvalContext, Scope
    from tags.rules.raw_events import EventIndex
    from tags.rules.values import Val, truth
    from tags.rules.windows import to_ns

__all__ = [
    "FUNCTIONS",
    "EvalContext",
    "EventIndex",
    "Rule",
    "Scope",
    "Val",
    "compile_rule",
    "event_needs",
    "frame_kinds",
    "parse_rule",
    "suggest",
    "to_ns",
    "truth",
]

_LAZY: dict[str, str] = {
    "EvalContext": "tags.rules.context",
    "Scope": "tags.rules.context",
    "EventIndex": "tags.rules.raw_events",
    "Val": "tags.rules.values",
    "truth": "tags.rules.values",
    "to_ns": "tags.rules.windows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
