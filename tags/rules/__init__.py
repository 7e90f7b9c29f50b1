"""The rule language: safe, vectorised expressions over named columns and raw events.

``compile_rule(text, names=...)`` parses and checks a rule; ``Rule.mask(frame, ...)``
evaluates it over every row at once. See the README section "Rule language".
"""

from __future__ import annotations

from tags.rules.compile import Rule, compile_rule, event_needs, frame_kinds
from tags.rules.context import EvalContext, Scope
from tags.rules.functions import FUNCTIONS
from tags.rules.names import suggest
from tags.rules.parser import parse_rule
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
