"""A profile as plain text lines (what ``tagsmith customers show`` prints)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from explain.profile import CustomerProfile, TagLine
from explain.rules import TagTrace
from explain.trace import Clause, Term

__all__ = ["number", "profile_lines", "trace_lines"]


def number(value: Any) -> str:
    """A value as short text: numbers without trailing zeros, null as ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _leaves(terms: tuple[Term, ...]) -> Iterator[Term]:
    for term in terms:
        if term.kind == "expression":
            yield from _leaves(term.inputs)
        elif term.kind != "literal":
            yield term


def _clause_terms(clause: Clause) -> list[Term]:
    out = list(_leaves(clause.terms))
    for child in clause.children:
        out += _clause_terms(child)
    return out


def _clause(clause: Clause) -> str:
    seen: dict[str, Term] = {}
    for term in _clause_terms(clause):
        seen.setdefault(term.text, term)
    parts = []
    for term in seen.values():
        suffix = " in the population" if term.kind == "threshold" else ""
        parts.append(f"{term.text} = {number(term.value)}{suffix}")
    inputs = f"   ({'; '.join(parts)})" if parts else ""
    return f"{clause.text} -> {number(clause.result)}{inputs}"


def trace_lines(trace: TagTrace) -> list[str]:
    """The why of a rule or fact tag, one clause per line."""
    lines = []
    if trace.scope is not None:
        lines.append(f"scope    {_clause(trace.scope)}")
    for name, clause in trace.lets:
        lines.append(f"let {name}  {_clause(clause)}")
    for i, case in enumerate(trace.cases, start=1):
        if not case.reached:
            continue
        mark = "  <- matched" if case.matched else ""
        label = (
            "when" if len(trace.cases) == 1 and case.value == "true" else f"case {i} {case.value}"
        )
        lines.append(f"{label}  {_clause(case.clause)}{mark}")
    matched = any(c.matched for c in trace.cases)
    if trace.cases and trace.in_scope and trace.else_value is not None and not matched:
        lines.append(f"else {trace.else_value}  <- no case matched")
    if trace.value_clause is not None:
        lines.append(f"value    {_clause(trace.value_clause)}")
    if not trace.in_scope:
        lines.append("not in the tag's scope: no value")
    return lines


def _headline(line: TagLine) -> str:
    value = "-" if line.value is None else line.value
    if line.value_name:
        value += f" ({line.value_name})"
    if line.score is not None:
        value += f", score {number(line.score)}"
    parts = [f"{line.tag_id}  {line.display_name} = {value}"]
    if line.version:
        parts.append(f"[{line.version}]")
    if line.since:
        parts.append(f"since {line.since[:10]}")
    return "  ".join(parts)


def profile_lines(profile: CustomerProfile) -> list[str]:
    """The whole profile as text lines."""
    lines = [f"customer {profile.customer_id} as of {profile.as_of[:10]} (run {profile.run_id})"]
    if profile.signup_at:
        lines.append(f"signed up {profile.signup_at[:10]}")
    if profile.attributes:
        shown = ", ".join(f"{k} {number(v)}" for k, v in profile.attributes.items())
        lines.append(f"attributes: {shown}")
    lines.extend(f"note: {n}" for n in profile.notes)
    for line in profile.tags:
        lines.append("")
        lines.append(_headline(line))
        why = line.why
        if isinstance(why, TagTrace):
            lines.extend(f"    {text}" for text in trace_lines(why))
        elif why is not None and hasattr(why, "lines"):
            lines.extend(f"    {text}" for text in why.lines())
        lines.extend(f"    note: {n}" for n in line.notes)
    if profile.transitions:
        lines.append("")
        lines.append("recent changes:")
        for t in profile.transitions:
            lines.append(f"    {t.as_of[:10]}  {t.tag_id}: {t.before or '-'} -> {t.after or '-'}")
    return lines
