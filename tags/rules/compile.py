"""Compile rule text: parse, check names, functions and types, and return a :class:`Rule`.

Checks run at load time so a catalogue with a typo fails when it is validated, not in
the middle of a nightly run, and every error quotes the rule with a caret under the
problem and suggests close matches for unknown names.

Compiling needs only the parser and the function whitelist; the interpreter (NumPy,
pandas, PyArrow) is imported by the methods that type-check or evaluate. Loading a
catalogue, which compiles every rule, so stays light enough for commands such as
``tagsmith tags list`` to start in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tags.errors import RuleError, RuleNameError, RuleSyntaxError, RuleTypeError
from tags.rules import ast
from tags.rules.names import suggest
from tags.rules.parser import parse_rule
from tags.rules.signatures import FUNCTIONS, event_filter

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tags.rules.context import Scope
    from tags.rules.values import Val

__all__ = ["Rule", "compile_rule", "event_needs", "frame_kinds"]


def frame_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Column name -> rule kind (num, bool, str, date) of a DataFrame's columns."""
    from tags.rules.values import kind_of_dtype

    return {str(c): kind_of_dtype(t) for c, t in frame.dtypes.items()}


@dataclass
class _Facts:
    names: list[ast.Name] = field(default_factory=list)
    events: list[ast.Call] = field(default_factory=list)
    aggregates: bool = False


def _walk(
    node: ast.Node,
    text: str,
    where: str,
    facts: _Facts,
    *,
    allow_events: bool,
    allow_aggregates: bool,
    in_aggregate: bool = False,
) -> None:
    def fail(at: ast.Node, reason: str, cls: type[RuleError] = RuleSyntaxError) -> RuleError:
        return cls(reason, text=text, column=at.column, width=at.width, where=where)

    def walk(child: ast.Node, inside: bool = in_aggregate) -> None:
        _walk(
            child,
            text,
            where,
            facts,
            allow_events=allow_events,
            allow_aggregates=allow_aggregates,
            in_aggregate=inside,
        )

    if isinstance(node, ast.Name):
        facts.names.append(node)
    elif isinstance(node, ast.Window):
        raise fail(node, "A time window only goes inside count(), sum() or days_since().")
    elif isinstance(node, ast.Call):
        spec = FUNCTIONS.get(node.func)
        if spec is None:
            raise fail(
                node,
                f"Unknown function '{node.func}()'. Expected one of "
                f"{', '.join(sorted(FUNCTIONS))}.{suggest(node.func, FUNCTIONS)}",
                RuleNameError,
            )
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            raise fail(node, f"Expected {spec.signature}. Got {count} argument(s).")
        if spec.family == "event":
            if not allow_events:
                raise fail(node, f"{node.func}() reads raw events, which are not available here.")
            first = node.args[0]
            if not isinstance(first, ast.Name):
                raise fail(
                    first,
                    f"Expected an event type as the first argument of "
                    f"{spec.signature} (e.g. purchase, browse).",
                )
            windows = 0
            filters = 0
            for arg in node.args[1:]:
                if isinstance(arg, ast.Window):
                    windows += 1
                elif event_filter(arg) is not None:
                    filters += 1
                else:
                    raise fail(
                        arg,
                        f'Expected a category filter (category = "c" or category '
                        f'in ("a", "b")) or a window (last 30 days, ...) in '
                        f"{node.func}(). Got something else.",
                    )
            if windows > 1 or filters > 1:
                raise fail(
                    node, f"Expected at most one window and one category filter in {node.func}()."
                )
            facts.events.append(node)
            return
        if spec.family == "aggregate":
            if not allow_aggregates:
                raise fail(node, f"Aggregate {node.func}() is not available here.")
            if in_aggregate:
                raise fail(node, f"Aggregates cannot nest: {node.func}() inside another one.")
            facts.aggregates = True
            if node.func == "quantile":
                q = node.args[1]
                constant = isinstance(q, ast.Literal) and isinstance(q.value, float)
                if not (constant and 0.0 <= float(q.value) <= 1.0):  # type: ignore[attr-defined]
                    raise fail(q, "quantile(x, q) needs a constant q between 0 and 1.")
            walk(node.args[0], True)
            return
        if (
            node.func == "round"
            and count == 2
            and not (isinstance(node.args[1], ast.Literal) and node.args[1].kind == "num")
        ):
            raise fail(node.args[1], "round(x, digits) needs constant digits.")
        for arg in node.args:
            walk(arg)
    elif isinstance(node, ast.Not):
        walk(node.operand)
    elif isinstance(node, ast.Binary | ast.Compare):
        walk(node.left)
        walk(node.right)
    elif isinstance(node, ast.IsNull | ast.In):
        walk(node.operand)
    elif isinstance(node, ast.Between):
        walk(node.operand)
        walk(node.low)
        walk(node.high)


@dataclass(frozen=True)
class Rule:
    """A compiled rule: its text, syntax tree and what it reads.

    Attributes:
        text: The rule as written.
        tree: Its syntax tree.
        where: What the rule belongs to (used in error messages).
        names: Column (or ``let``) names it reads.
        event_calls: Its event-window calls (``count``, ``sum``, ``days_since``).
        uses_aggregates: Whether it calls ``median``/``quantile``/... over the population.
    """

    text: str
    tree: ast.Node
    where: str
    names: tuple[ast.Name, ...]
    event_calls: tuple[ast.Call, ...]
    uses_aggregates: bool

    @property
    def name_set(self) -> frozenset[str]:
        """The distinct names the rule reads."""
        return frozenset(n.name for n in self.names)

    @property
    def event_types(self) -> frozenset[str]:
        """The event types its window functions read."""
        return frozenset(c.args[0].name for c in self.event_calls)  # type: ignore[attr-defined]

    def check_names(self, names: Iterable[str]) -> None:
        """Raise :class:`RuleNameError` for the first name not in ``names``, with suggestions."""
        known = set(names)
        for node in self.names:
            if node.name not in known:
                raise RuleNameError(
                    f"Unknown name '{node.name}'.{suggest(node.name, known)}",
                    text=self.text,
                    column=node.column,
                    width=node.width,
                    where=self.where,
                )

    def check_event_types(self, event_types: Iterable[str]) -> None:
        """Raise :class:`RuleNameError` for an event type not in ``event_types``."""
        known = set(event_types)
        for call in self.event_calls:
            first = call.args[0]
            assert isinstance(first, ast.Name)
            if first.name not in known:
                raise RuleNameError(
                    f"Unknown event type '{first.name}' in {call.func}(). Expected one of "
                    f"{', '.join(sorted(known))}.{suggest(first.name, known)}",
                    text=self.text,
                    column=first.column,
                    width=first.width,
                    where=self.where,
                )

    def check_types(self, kinds: Mapping[str, str], *, expect: str | None = None) -> str:
        """Type-check against column kinds without data; return the result's kind.

        Raises:
            RuleNameError: A name is not in ``kinds``.
            RuleTypeError: Types do not fit, or the result is not of kind ``expect``.
        """
        from tags.rules.context import EvalContext, Scope
        from tags.rules.values import BOOL, NUM, STR

        self.check_names(kinds)
        ctx = EvalContext.from_kinds(kinds)
        value = self.evaluate(Scope(ctx))
        if expect is not None and value.kind not in (expect, "null"):
            wanted = {BOOL: "a condition (true/false)", STR: "a string", NUM: "a number"}
            raise RuleTypeError(
                f"Expected {wanted.get(expect, expect)}. Got a {value.kind} expression.",
                text=self.text,
                column=1,
                width=len(self.text),
                where=self.where,
            )
        return value.kind

    def evaluate(self, scope: Scope) -> Val:
        """Evaluate over every row of ``scope`` (errors name this rule)."""
        from tags.rules.evaluate import evaluate_node

        return evaluate_node(self.tree, scope.for_rule(self.text, self.where))

    def mask(
        self,
        frame: pd.DataFrame,
        *,
        events: pd.DataFrame | None = None,
        as_of: pd.Timestamp | str | None = None,
        population: np.ndarray | None = None,
    ) -> np.ndarray:
        """Where the rule is true, one bool per row of ``frame`` (null counts as false).

        Args:
            frame: Named columns, one row per customer (features, or tag values).
            events: Canonical events, for event-window functions.
            as_of: Evaluation time for event windows.
            population: Rows that aggregates (``median`` ...) are computed over.

        Raises:
            RuleError: A name is unknown, types do not fit, or the result is not a
                condition.
        """
        import numpy as np

        from tags.rules.context import EvalContext, Scope
        from tags.rules.values import BOOL, truth
        from tags.rules.windows import to_ns

        ctx = EvalContext(
            frame,
            events=events,
            as_of=as_of,
            event_needs=event_needs([self], None if as_of is None else to_ns(as_of)),
        )
        value = self.evaluate(Scope(ctx, population=population))
        if value.kind not in (BOOL, "null"):
            raise RuleTypeError(
                f"Expected a condition (true/false). Got a {value.kind} expression.",
                text=self.text,
                column=1,
                width=len(self.text),
                where=self.where,
            )
        if value.kind == "null":
            return np.zeros(len(frame), dtype=bool)
        return truth(value, len(frame))


def event_needs(rules: Iterable[Rule], as_of_ns: int | None) -> dict[str, int]:
    """Event type -> earliest time (ns) any of ``rules`` reads (to prefilter events)."""
    from tags.rules.windows import NAT, window_bounds

    needs: dict[str, int] = {}
    anchor = as_of_ns if as_of_ns is not None else 0
    for rule in rules:
        for call in rule.event_calls:
            first = call.args[0]
            assert isinstance(first, ast.Name)
            window = next((a for a in call.args[1:] if isinstance(a, ast.Window)), None)
            start = window_bounds(window, anchor)[0] if as_of_ns is not None else NAT
            needs[first.name] = min(needs.get(first.name, start), start)
    return needs


def compile_rule(
    text: str,
    *,
    names: Iterable[str] | Mapping[str, str] | None = None,
    event_types: Iterable[str] | None = None,
    where: str = "",
    expect: str | None = None,
    allow_events: bool = True,
    allow_aggregates: bool = True,
) -> Rule:
    """Parse and check one rule.

    Args:
        text: The rule text.
        names: The names the rule may read. A mapping name -> kind (``num``, ``bool``,
            ``str``, ``date``; see :func:`frame_kinds`) also type-checks the rule.
            ``None`` defers name checks to evaluation.
        event_types: Event types window functions may read (``None``: any).
        where: What the rule belongs to, for error messages (e.g. "tag 'x'").
        expect: The kind the rule must produce (``bool`` for conditions), checked when
            ``names`` is a mapping.
        allow_events: Whether event-window functions are allowed (audiences over tag
            values have no events).
        allow_aggregates: Whether aggregates (``median`` ...) are allowed.

    Raises:
        RuleSyntaxError: It does not parse or misuses a construct.
        RuleNameError: It reads an unknown name, function or event type.
        RuleTypeError: Types do not fit (only when ``names`` gives kinds).
    """
    tree = parse_rule(text, where=where)
    facts = _Facts()
    _walk(tree, text, where, facts, allow_events=allow_events, allow_aggregates=allow_aggregates)
    rule = Rule(
        text=text,
        tree=tree,
        where=where,
        names=tuple(facts.names),
        event_calls=tuple(facts.events),
        uses_aggregates=facts.aggregates,
    )
    if event_types is not None:
        rule.check_event_types(event_types)
    if isinstance(names, Mapping):
        rule.check_types(names, expect=expect)
    elif names is not None:
        rule.check_names(names)
    return rule
