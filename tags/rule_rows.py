"""Rule tags of a few rows: each rule's syntax tree compiled once into Python closures.

The vectorised interpreter (:mod:`tags.rules.evaluate`) pays per node of every rule a
fixed cost (a :class:`~tags.rules.values.Val`, null masks, numpy calls on arrays of one
or two entries) that dwarfs the work when a call tags one customer (``POST /score``, a
small real-time micro-batch). Here each tag's trees are compiled once per feature layout
into nested closures over one row's Python values, and a call runs them row by row.
Nothing is executed from rule text: every closure is one fixed operation chosen from the
parsed tree's node type, as the interpreter chooses its numpy operation.

The closures give the interpreter's values exactly:

* numbers are Python floats; a ``float32`` feature keeps its float32 precision where
  numpy keeps it (against a constant or another float32 column the constant is rounded
  to float32, and arithmetic is rounded back to float32: exact, since one float64
  operation on float32 values rounds to the same float32), and a computed value becomes
  float64 as the interpreter's results do;
* NaN is null in a column but not in a constant (an aggregate over no one): ``x != c``
  with ``c`` NaN is true, as in numpy;
* true/false values are ``True``/``False``/``None`` (null), with three-valued logic;
* strings compare as numpy's fixed-width strings do (trailing NUL characters ignored);
* division (and ``%``) by zero, and an infinite quotient, is null.

Event windows (``count``/``sum``/``days_since``) are computed once per call and read
per row: from each customer's own segment of the event index
(:meth:`tags.rule_row_env.RowEnv.window`, the index's values), or with a category
filter by the interpreter's own function. Population aggregates (``median`` ...) are
computed (or pinned) by the interpreter's own function, so they and
:attr:`TagValues.thresholds` are the interpreter's. A tag using anything else
(dates, ``coalesce``, an aggregate of a ``let`` name, a value expression other than a
text column) is not compiled (:func:`row_tag` returns ``None``) and stays with the
interpreter.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from tags.catalogue import CompiledTag
from tags.engine import TagValues, case_values, scope_thresholds, value_rows
from tags.rule_row_env import RowEnv, Unsupported
from tags.rules import ast
from tags.rules.context import Scope
from tags.rules.evaluate import COMPARISONS, SWAPPED, evaluate_node
from tags.rules.functions import call_function
from tags.rules.signatures import FUNCTIONS, event_filter
from tags.rules.values import BOOL, NULL, NUM, STR, Val

__all__ = ["RowEnv", "RowTag", "row_tag"]

# A compiled node: one row's value from the call's environment and the row position.
RowFn = Callable[[RowEnv, int], Any]

# Below this magnitude a float64 rounds to a finite float32 without numpy's warning.
_F32_SAFE = 3.4e38
_NAN = float("nan")


def _f32(x: float) -> float:
    """``x`` rounded to float32 (as numpy casts a Python float), back as a Python float."""
    if -_F32_SAFE < x < _F32_SAFE or x != x:
        return float(np.float32(x))
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _text(value: str) -> str:
    # numpy's fixed-width strings drop trailing NULs: compare what numpy compares.
    return value.rstrip("\x00")


class _Expr(NamedTuple):
    """A compiled node: its closure and static type.

    ``const``: the same for every row (a Python scalar in the interpreter, whose NaN is
    a value, not null); ``f32``: a float32 column's value.
    """

    fn: RowFn
    kind: str
    f32: bool = False
    const: bool = False


class _Compiler:
    """Compiles the trees of one tag, recording what a call must prepare."""

    def __init__(self, kinds: Mapping[str, tuple[str, bool]]) -> None:
        self.kinds = kinds
        self.bound: dict[str, tuple[int, _Expr]] = {}
        self.columns: dict[str, tuple[str, bool]] = {}
        self.events: dict[tuple[Any, ...], tuple[ast.Call, str, str, ast.Window | None]] = {}
        self.aggregates: list[tuple[ast.Call, str, str]] = []
        self.rule: tuple[str, str] = ("", "")

    def compile(self, tree: ast.Node, text: str, where: str) -> _Expr:
        self.rule = (text, where)
        return self.node(tree)

    def node(self, node: ast.Node) -> _Expr:
        if isinstance(node, ast.Literal):
            return _literal(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Not):
            return _not(self.node(node.operand))
        if isinstance(node, ast.Binary):
            left, right = self.node(node.left), self.node(node.right)
            if node.op in ("and", "or"):
                return _logic(node.op, left, right)
            return _arith(node.op, left, right)
        if isinstance(node, ast.Compare):
            return _compare(node.op, self.node(node.left), self.node(node.right))
        if isinstance(node, ast.IsNull):
            return _is_null(self.node(node.operand), node.negated)
        if isinstance(node, ast.In):
            return _in(self.node(node.operand), node.items, node.negated)
        if isinstance(node, ast.Between):
            operand = self.node(node.operand)
            low = _compare(">=", operand, self.node(node.low))
            high = _compare("<=", operand, self.node(node.high))
            both = _logic("and", low, high)
            return _not(both) if node.negated else both
        if isinstance(node, ast.Call):
            return self.call(node)
        raise Unsupported(type(node).__name__)

    def name(self, node: ast.Name) -> _Expr:
        found = self.bound.get(node.name)
        if found is not None:
            slot, expr = found
            return expr._replace(fn=lambda e, i: e.lets[slot])
        kind, f32 = self.kinds.get(node.name, ("", False))
        if kind not in (NUM, BOOL, STR):
            raise Unsupported(node.name)
        self.columns[node.name] = (kind, f32)
        name = node.name
        return _Expr(lambda e, i: e.cols[name][i], kind, f32)

    def call(self, call: ast.Call) -> _Expr:
        family = FUNCTIONS[call.func].family
        if family == "event":
            first = call.args[0]
            assert isinstance(first, ast.Name)
            window = next((a for a in call.args[1:] if isinstance(a, ast.Window)), None)
            filters = [event_filter(a) for a in call.args[1:] if not isinstance(a, ast.Window)]
            bounds = None if window is None else (window.kind, window.start, window.end)
            key = (call.func, first.name, filters[0] if filters else None, bounds)
            self.events[key] = (call, *self.rule, window)
            return _Expr(lambda e, i: e.cols[key][i], NUM)
        if family == "aggregate":
            inner = [n.name for n in _names(call.args[0]) if n.name in self.bound]
            if inner:
                raise Unsupported(f"aggregate of let {inner}")
            slot = len(self.aggregates)
            self.aggregates.append((call, *self.rule))
            return _Expr(lambda e, i: e.aggs[slot], NUM, const=True)
        args = [self.node(a) for a in call.args]
        if any(a.kind not in (NUM, NULL) for a in args) or call.func == "coalesce":
            raise Unsupported(call.func)
        args = [a if a.kind == NUM else _Expr(lambda e, i: _NAN, NUM, const=True) for a in args]
        if call.func == "abs":
            (arg,) = args
            f = arg.fn
            return _Expr(lambda e, i: abs(f(e, i)), NUM, const=arg.const)
        if call.func == "round":
            return _round(call, args)
        return _least_greatest(call.func, args)


def _names(node: ast.Node) -> list[ast.Name]:
    """Every name under ``node``."""
    if isinstance(node, ast.Name):
        return [node]
    out: list[ast.Name] = []
    for value in vars(node).values():
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, ast.Node):
                out += _names(child)
    return out


def _literal(node: ast.Literal) -> _Expr:
    if node.kind not in (NUM, STR, BOOL, NULL):
        raise Unsupported(node.kind)
    value = float(node.value) if node.kind == NUM else node.value  # type: ignore[arg-type]
    return _Expr(lambda e, i: value, node.kind, const=True)


def _not(operand: _Expr) -> _Expr:
    if operand.kind != BOOL:
        raise Unsupported("not")
    f = operand.fn

    def fn(e: RowEnv, i: int) -> bool | None:
        v = f(e, i)
        return None if v is None else not v

    return _Expr(fn, BOOL, const=operand.const)


def _logic(op: str, left: _Expr, right: _Expr) -> _Expr:
    if left.kind not in (BOOL, NULL) or right.kind not in (BOOL, NULL):
        raise Unsupported(op)
    fa, fb = left.fn, right.fn
    if op == "and":

        def fn(e: RowEnv, i: int) -> bool | None:
            a = fa(e, i)
            if a is False:
                return False
            b = fb(e, i)
            if b is False:
                return False
            return None if a is None or b is None else True

    else:

        def fn(e: RowEnv, i: int) -> bool | None:
            a = fa(e, i)
            if a is True:
                return True
            b = fb(e, i)
            if b is True:
                return True
            return None if a is None or b is None else False

    return _Expr(fn, BOOL)


def _arith(op: str, left: _Expr, right: _Expr) -> _Expr:
    if NULL in (left.kind, right.kind):
        other = right if left.kind == NULL else left
        if other.kind not in (NUM, NULL):
            raise Unsupported(op)
        return _Expr(lambda e, i: _NAN, NUM, const=other.const)
    if left.kind != NUM or right.kind != NUM:
        raise Unsupported(op)  # date arithmetic
    const = left.const and right.const
    # numpy keeps float32 when each side is float32 or a Python scalar (not both scalars).
    in32 = not const and (left.f32 or left.const) and (right.f32 or right.const)
    fa, fb = left.fn, right.fn
    if op == "%":
        cast = np.float32 if in32 else np.float64

        def fn(e: RowEnv, i: int) -> float:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                out = float(np.mod(cast(fa(e, i)), cast(fb(e, i))))
            return _NAN if math.isinf(out) else out

    elif op == "/":
        ra, rb = _rounded(left, in32), _rounded(right, in32)

        def fn(e: RowEnv, i: int) -> float:
            a, b = ra(e, i), rb(e, i)
            if b == 0:
                return _NAN  # x/0 is an infinity or NaN, both null
            out = _f32(a / b) if in32 else a / b
            return _NAN if math.isinf(out) else out

    else:
        py = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
        ra, rb = _rounded(left, in32), _rounded(right, in32)
        if in32:
            fn = lambda e, i: _f32(py(ra(e, i), rb(e, i)))  # noqa: E731
        else:
            fn = lambda e, i: py(ra(e, i), rb(e, i))  # noqa: E731
    return _Expr(fn, NUM, const=const)


def _rounded(side: _Expr, in32: bool) -> RowFn:
    """A side of a float32 operation: a constant is rounded to float32 first."""
    f = side.fn
    if in32 and side.const:
        return lambda e, i: _f32(f(e, i))
    return f


def _compare(op: str, left: _Expr, right: _Expr) -> _Expr:
    if left.kind != right.kind or left.kind not in (NUM, BOOL, STR):
        raise Unsupported(op)
    func = COMPARISONS[op]
    fa, fb = left.fn, right.fn
    if left.const and right.const:
        return _Expr(lambda e, i: bool(func(fa(e, i), fb(e, i))), BOOL, const=True)
    if left.const:
        left, right, func = right, left, COMPARISONS[SWAPPED[op]]
        fa, fb = left.fn, right.fn
    strong_b = not right.const
    if left.kind == NUM:
        if left.f32 and right.const:
            ga = fa

            def fn(e: RowEnv, i: int) -> bool | None:
                a = ga(e, i)
                return None if a != a else func(a, _f32(fb(e, i)))

        else:

            def fn(e: RowEnv, i: int) -> bool | None:
                a, b = fa(e, i), fb(e, i)
                if a != a or (strong_b and b != b):
                    return None
                return func(a, b)

    elif left.kind == STR:

        def fn(e: RowEnv, i: int) -> bool | None:
            a, b = fa(e, i), fb(e, i)
            if a is None or (strong_b and b is None):
                return None
            return func(_text(a), _text(str(b)))

    else:

        def fn(e: RowEnv, i: int) -> bool | None:
            a, b = fa(e, i), fb(e, i)
            return None if a is None or b is None else func(a, b)

    return _Expr(fn, BOOL)


def _is_null(operand: _Expr, negated: bool) -> _Expr:
    if operand.const:
        answer = (operand.kind == NULL) != negated
        return _Expr(lambda e, i: answer, BOOL, const=True)
    f = operand.fn
    if operand.kind == NUM:
        return _Expr(lambda e, i: ((v := f(e, i)) != v) != negated, BOOL)
    return _Expr(lambda e, i: (f(e, i) is None) != negated, BOOL)


def _in(operand: _Expr, items: tuple[ast.Literal, ...], negated: bool) -> _Expr:
    if {item.kind for item in items} != {operand.kind} or operand.kind not in (NUM, BOOL, STR):
        raise Unsupported("in")
    values = [item.value for item in items]
    f = operand.fn
    if operand.const:
        return _Expr(lambda e, i: (f(e, i) in values) != negated, BOOL, const=True)
    if operand.kind == STR:
        texts = {_text(str(v)) for v in values}

        def fn(e: RowEnv, i: int) -> bool | None:
            v = f(e, i)
            return None if v is None else (_text(v) in texts) != negated

    else:
        found = set(values)

        def fn(e: RowEnv, i: int) -> bool | None:
            v = f(e, i)
            return None if v is None or v != v else (v in found) != negated

    return _Expr(fn, BOOL)


def _round(call: ast.Call, args: list[_Expr]) -> _Expr:
    digits = 0
    if len(args) == 2:
        second = call.args[1]
        if not isinstance(second, ast.Literal) or second.kind != NUM:
            raise Unsupported("round digits")
        digits = int(float(second.value))  # type: ignore[arg-type]
    arg = args[0]
    # np.round rounds a float32 column in float32: round the same numpy scalar.
    cast = np.float32 if arg.f32 and not arg.const else np.float64
    f = arg.fn

    def fn(e: RowEnv, i: int) -> float:
        with np.errstate(invalid="ignore"):
            return float(np.round(cast(f(e, i)), digits))

    return _Expr(fn, NUM, const=arg.const)


def _least_greatest(func: str, args: list[_Expr]) -> _Expr:
    # np.fmin/np.fmax fold left to right; each step's precision follows numpy's
    # promotion: a Python scalar takes the other side's float32, two scalars give a
    # float64 scalar (no longer weak), anything with float64 gives float64.
    state = "w" if args[0].const else ("32" if args[0].f32 else "64")
    steps: list[tuple[RowFn, bool]] = []
    for arg in args[1:]:
        other = "w" if arg.const else ("32" if arg.f32 else "64")
        if "64" in (state, other) or (state, other) == ("w", "w"):
            state, cast = "64", False
        else:
            cast = state == "w" or other == "w"
            state = "32"
        steps.append((arg.fn, cast))
    first = args[0].fn
    pick_a = operator.le if func == "least" else operator.ge

    def fn(e: RowEnv, i: int) -> float:
        a = first(e, i)
        for g, cast in steps:
            b = g(e, i)
            if cast:
                a, b = _f32(a), _f32(b)
            # fmin/fmax: the first unless it loses or the second is NaN (NaN ignored).
            if not (pick_a(a, b) or b != b):
                a = b
        return float(a)

    return _Expr(fn, NUM, const=all(a.const for a in args))


class RowTag:
    """One tag compiled into closures (build with :func:`row_tag`)."""

    def __init__(self, compiled: CompiledTag, kinds: Mapping[str, tuple[str, bool]]) -> None:
        self.compiled = compiled
        outer = _Compiler(kinds)
        self._scope = None
        if compiled.scope is not None:
            rule = compiled.scope
            self._scope = outer.compile(rule.tree, rule.text, rule.where).fn
        inner = _Compiler(kinds)
        self._lets: list[RowFn] = []
        for name, rule in compiled.lets:
            expr = inner.compile(rule.tree, rule.text, rule.where)
            inner.bound[name] = (len(self._lets), expr)
            self._lets.append(expr.fn)
        self._when = None
        if compiled.when is not None:
            rule = compiled.when
            self._when = inner.compile(rule.tree, rule.text, rule.where).fn
        self._cases = [
            (value, inner.compile(rule.tree, rule.text, rule.where).fn)
            for value, rule in compiled.cases
        ]
        self._value: str | None = None
        if compiled.value is not None:
            tree = compiled.value.tree
            if not isinstance(tree, ast.Name) or tree.name in inner.bound:
                raise Unsupported("value expression")
            if kinds.get(tree.name, ("", False))[0] != STR:
                raise Unsupported("value column")
            self._value = tree.name
        self._columns = {**outer.columns, **inner.columns}
        self._events = {**outer.events, **inner.events}
        self._outer_aggregates = outer.aggregates
        self._inner_aggregates = inner.aggregates

    def evaluate(self, env: RowEnv) -> TagValues | None:
        """The tag's rows and values (``None``: a column is not of the compiled kind, so
        the interpreter must evaluate this tag)."""
        try:
            for name, (kind, f32) in self._columns.items():
                env.column(name, kind, f32)
        except Unsupported:
            return None
        ctx, n, tag = env.ctx, env.n, self.compiled.tag
        for key, (call, text, where, window) in self._events.items():
            if key in env.cols:
                continue
            if key[2] is None:  # no category filter
                env.cols[key] = env.window(call.func, key[1], window)
            else:
                found = call_function(call, Scope(ctx, text=text, where=where), evaluate_node)
                env.cols[key] = found.data.tolist()
        scopes: list[Scope] = []
        population = None
        if self._scope is not None:
            outer = Scope(ctx, label=tag.id)
            scopes.append(outer)
            env.aggs = _aggregates(outer, self._outer_aggregates)
            f = self._scope
            population = np.array([f(env, i) is True for i in range(n)], dtype=bool)
        scope = Scope(ctx, population=population, label=tag.id)
        scopes.append(scope)
        env.aggs = _aggregates(scope, self._inner_aggregates)
        result = self._rows(env, population)
        result.thresholds = scope_thresholds(*scopes)
        return result

    def _rows(self, env: RowEnv, population: np.ndarray | None) -> TagValues:
        tag, n = self.compiled.tag, env.n
        rows = range(n) if population is None else np.flatnonzero(population).tolist()
        if self._value is not None:
            in_scope = population if population is not None else np.ones(n, dtype=bool)
            found = env.ctx.column(self._value)
            assert found is not None
            return value_rows(self.compiled, found, in_scope)
        lets = self._lets
        env.lets = [None] * len(lets)
        if self._when is not None:
            when, hits = self._when, []
            for i in rows:
                for k, let in enumerate(lets):
                    env.lets[k] = let(env, i)
                if when(env, i) is True:
                    hits.append(i)
            at = np.array(hits, dtype=np.int64)
            return TagValues(tag.id, at, np.zeros(len(at), dtype=np.int64), ["true"])
        values = tag.value_ids if not tag.open_values else case_values(self.compiled)
        position = {v: j for j, v in enumerate(values)}
        else_value = tag.rule.else_ if tag.rule is not None else None
        otherwise = -1 if else_value is None else position[else_value]
        cases = [(position[value], fn) for value, fn in self._cases]
        codes = [-1] * n
        for i in rows:
            for k, let in enumerate(lets):
                env.lets[k] = let(env, i)
            codes[i] = next((code for code, fn in cases if fn(env, i) is True), otherwise)
        out = np.array(codes, dtype=np.int64)
        at = np.flatnonzero(out >= 0)
        return TagValues(tag.id, at, out[at], values)


def _aggregates(scope: Scope, calls: list[tuple[ast.Call, str, str]]) -> list[float]:
    """The scope's aggregate values by slot, computed (or pinned) by the interpreter's
    own function, which records them in ``scope.aggregates`` for the thresholds."""
    out = []
    for call, text, where in calls:
        found: Val = call_function(call, scope.for_rule(text, where), evaluate_node)
        out.append(float(found.data))
    return out


def row_tag(compiled: CompiledTag, kinds: Mapping[str, tuple[str, bool]]) -> RowTag | None:
    """``compiled`` as closures, or ``None`` if it uses a construct they do not cover.

    Args:
        compiled: The tag, type-checked against the same kinds.
        kinds: Feature name -> (rule kind, whether the column is float32).
    """
    try:
        return RowTag(compiled, kinds)
    except Unsupported:
        return None
