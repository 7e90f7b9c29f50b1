"""Interpret a rule's syntax tree over a frame of named columns, vectorised with numpy.

Nothing here executes rule text: the tree is walked and every node maps to a fixed
numpy operation. Event-window functions (``count``, ``sum``, ``days_since``) read an
:class:`EventIndex` built once per evaluation: the events before ``as_of`` placed on the
frame's rows and split by event type, so each window is one mask and one ``bincount``.
Given :class:`features.build.PreparedEvents` instead of raw events, they read a
:class:`tags.rules.prepared.PreparedEventIndex`, which needs no hashing at all.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.build import AMOUNT_SCALE, PreparedEvents
from tags.errors import RuleEvalError, RuleNameError, RuleTypeError
from tags.rules import ast
from tags.rules.values import BOOL, DATE, NULL, NUM, STR, Val, from_series, truth

if TYPE_CHECKING:
    from tags.rules.prepared import PreparedEventIndex

__all__ = ["DAY_NS", "EvalContext", "EventIndex", "Scope", "evaluate_node", "to_ns"]

DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SWAP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def to_ns(values: pd.Series | pd.Timestamp | str | np.datetime64) -> Any:
    """Nanoseconds since the epoch (UTC) of a timestamp or a datetime column.

    Naive timestamps are taken as UTC. Columns come back as int64 arrays (NaT as the
    smallest int64).
    """
    if isinstance(values, pd.Series):
        series = values
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series, utc=True)
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return series.to_numpy(dtype="datetime64[ns]").view(np.int64)
    stamp = pd.Timestamp(values)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def _raw_times(series: pd.Series) -> tuple[np.ndarray, int]:
    """Timestamps as stored (int64 in the column's unit) and the factor to nanoseconds.

    Zero-copy for canonical ``datetime64[us, UTC]`` columns; NaT is the smallest int64.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        unit = series.dt.unit
        factor = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        return np.asarray(series.array.asi8), factor
    return to_ns(series), 1


def arrow_strings(values: pd.Series | pd.Index | np.ndarray) -> pa.Array:
    """A column as an Arrow large_string array (zero-copy for Arrow-backed strings)."""
    array = pa.array(pd.Series(values).array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def _positions(ids: pa.Array, customer_ids: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Row of each id in ``customer_ids`` (-1 if absent).

    Hashes in Arrow (zero-copy for Arrow-backed string columns), several times faster
    than ``Index.get_indexer`` over Python string objects.
    """
    found = pc.fill_null(pc.index_in(ids, value_set=arrow_strings(customer_ids)), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


class EventIndex:
    """Events before ``as_of``, positioned on a frame's rows and split by event type.

    Args:
        events: Canonical events (``customer_id``, ``occurred_at``, ``event_type``,
            ``amount``, ``category``).
        customer_ids: The frame's customer ids, in row order (unique).
        as_of_ns: The evaluation time (ns since epoch, UTC); later events are dropped.
        needs: Event type -> earliest time (ns) any rule looks at. Events of other types
            or earlier times are dropped up front. ``None`` keeps everything.
    """

    def __init__(
        self,
        events: pd.DataFrame,
        customer_ids: pd.Series | pd.Index | np.ndarray,
        as_of_ns: int,
        *,
        needs: Mapping[str, int] | None = None,
    ) -> None:
        self.n = len(customer_ids)
        self.as_of_ns = as_of_ns
        self._by_type: dict[str, dict[str, np.ndarray]] = {}
        self._categories: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        if needs is not None and not needs:
            return
        # Cheap filters first (time on raw integers, then type), so the costly part,
        # hashing customer ids onto frame rows, only sees events some rule reads.
        raw, factor = _raw_times(events["occurred_at"])
        keep = raw < -(-as_of_ns // factor)
        if needs is not None:
            earliest = min(needs.values())
            if earliest > _NAT:
                keep &= raw >= earliest // factor
        rows = np.flatnonzero(keep)
        # Arrow takes and hashing: several times faster than pandas' take on strings.
        encoded = pc.dictionary_encode(arrow_strings(events["event_type"]).take(pa.array(rows)))
        type_codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
        type_names = [str(t) for t in encoded.dictionary.to_pylist()]
        if needs is not None:
            wanted = np.isin(type_codes, [i for i, t in enumerate(type_names) if t in needs])
            rows, type_codes = rows[wanted], type_codes[wanted]
        pos = _positions(arrow_strings(events["customer_id"]).take(pa.array(rows)), customer_ids)
        on_frame = pos >= 0
        rows, pos, type_codes = rows[on_frame], pos[on_frame], type_codes[on_frame]
        amount = events["amount"].to_numpy(dtype="float64", na_value=np.nan)[rows]
        # Categories are only read by rules with a category filter: taken on first use.
        self._events_category = events["category"]
        self._rows = rows
        ts = raw[rows] * factor
        for code, name in enumerate(type_names):
            sel = np.flatnonzero(type_codes == code)
            self._by_type[str(name)] = {
                "sel": sel,
                "pos": pos[sel],
                "ts": ts[sel],
                "amount": np.nan_to_num(amount[sel], nan=0.0),
            }

    def _category_codes(self, event_type: str) -> tuple[np.ndarray, dict[str, int]]:
        if event_type not in self._categories:
            part = self._by_type[event_type]
            codes, uniques = pd.factorize(self._events_category.take(self._rows[part["sel"]]))
            lookup = {str(u): i for i, u in enumerate(uniques)}
            self._categories[event_type] = (codes, lookup)
        return self._categories[event_type]

    def select(
        self,
        event_type: str,
        window: ast.Window | None,
        categories: tuple[str, ...] | None,
    ) -> dict[str, np.ndarray] | None:
        """Row positions, times and amounts of matching events (``None``: no such events)."""
        part = self._by_type.get(event_type)
        if part is None:
            return None
        lo, hi = window_bounds(window, self.as_of_ns)
        ts = part["ts"]
        mask = np.ones(len(ts), dtype=bool) if lo == _NAT else ts >= lo
        if hi < self.as_of_ns:
            mask &= ts < hi
        if categories is not None:
            codes, lookup = self._category_codes(event_type)
            wanted = [lookup[c] for c in categories if c in lookup]
            mask &= np.isin(codes, wanted)
        return {"pos": part["pos"][mask], "ts": ts[mask], "amount": part["amount"][mask]}

    def aggregate(
        self,
        func: str,
        event_type: str,
        window: ast.Window | None,
        categories: tuple[str, ...] | None,
    ) -> np.ndarray:
        """``count``, ``sum`` or ``days_since`` of matching events, per frame row (float64)."""
        n = self.n
        picked = self.select(event_type, window, categories)
        if func == "count":
            if picked is None:
                return np.zeros(n)
            return np.bincount(picked["pos"], minlength=n).astype("float64")
        if func == "sum":
            if picked is None:
                return np.zeros(n)
            # Fixed-point sums (as features.build does): exact, so the same events give
            # the same total whatever their order or the path that summed them.
            cents = np.rint(picked["amount"] * AMOUNT_SCALE)
            return np.bincount(picked["pos"], weights=cents, minlength=n) / AMOUNT_SCALE
        out = np.full(n, np.nan)
        if picked is not None and len(picked["pos"]):
            latest = np.full(n, _NAT, dtype=np.int64)
            np.maximum.at(latest, picked["pos"], picked["ts"])
            seen = latest > _NAT
            out[seen] = (self.as_of_ns - latest[seen]) / DAY_NS
        return out


def window_bounds(window: ast.Window | None, as_of_ns: int) -> tuple[int, int]:
    """``[start, end)`` of a window in ns; no window means all history before as_of."""
    if window is None:
        return _NAT, as_of_ns
    if window.kind == "relative":
        start = as_of_ns - round(float(window.start) * DAY_NS)
        end = as_of_ns - round(float(window.end or 0) * DAY_NS)
        return start, end
    end_abs = as_of_ns if window.end is None else min(int(window.end), as_of_ns)
    return int(window.start), end_abs


class EvalContext:
    """Columns of one frame, converted once, plus the events for window functions.

    Args:
        frame: One row per customer (features, or tag values for audiences).
        events: Canonical events, for ``count``/``sum``/``days_since`` (optional), or
            the same events prepared by :func:`features.build.prepare_events` (then
            windows are read from its sorted arrays instead of hashing customer ids).
        as_of: The evaluation time; required when ``events`` is given.
        event_needs: Restrict the event index to these types and times (see
            :class:`EventIndex`).
        id_column: The customer id column, used to place events on rows.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        events: pd.DataFrame | PreparedEvents | None = None,
        as_of: pd.Timestamp | str | None = None,
        event_needs: Mapping[str, int] | None = None,
        id_column: str = "customer_id",
    ) -> None:
        self.frame = frame
        self.n = len(frame)
        self.as_of_ns = None if as_of is None else to_ns(as_of)
        self._columns: dict[str, Val] = {}
        self._events = events
        self._event_needs = event_needs
        self._id_column = id_column
        self._event_index: EventIndex | PreparedEventIndex | None = None
        self.window_cache: dict[tuple[Any, ...], Val] = {}

    @classmethod
    def from_kinds(cls, kinds: Mapping[str, str]) -> EvalContext:
        """An empty context whose columns have the given kinds (for load-time type checks)."""
        ctx = cls(pd.DataFrame(), events=None, as_of="2000-01-01")
        for name, kind in kinds.items():
            ctx._columns[name] = _empty(kind)
        ctx._event_index = EventIndex(
            pd.DataFrame(), np.array([], dtype=object), int(ctx.as_of_ns or 0), needs={}
        )
        return ctx

    @property
    def names(self) -> list[str]:
        """Every column name this context can resolve."""
        return sorted(set(self._columns) | {str(c) for c in self.frame.columns})

    def column(self, name: str) -> Val | None:
        """The column called ``name`` as a rule value (``None`` if absent)."""
        if name not in self._columns:
            if name not in self.frame.columns:
                return None
            self._columns[name] = from_series(self.frame[name])
        return self._columns[name]

    def events(self, call: ast.Call, text: str, where: str) -> EventIndex | PreparedEventIndex:
        """The event index (built on first use)."""
        if self._event_index is None:
            if self._events is None or self.as_of_ns is None:
                raise RuleEvalError(
                    f"{call.func}() reads events, so the rule needs events and an as_of date. "
                    "Got none.",
                    text=text,
                    column=call.column,
                    width=call.width,
                    where=where,
                )
            ids = self.frame[self._id_column]
            if isinstance(self._events, PreparedEvents):
                from tags.rules.prepared import PreparedEventIndex

                self._event_index = PreparedEventIndex(self._events, ids, self.as_of_ns)
            else:
                self._event_index = EventIndex(
                    self._events, ids, self.as_of_ns, needs=self._event_needs
                )
        return self._event_index


def _empty(kind: str) -> Val:
    if kind == NUM:
        return Val(NUM, np.empty(0, dtype="float64"))
    if kind == BOOL:
        return Val(BOOL, np.empty(0, dtype=bool))
    if kind == DATE:
        return Val(DATE, np.empty(0, dtype=np.int64), null=np.empty(0, dtype=bool))
    return Val(STR, np.empty(0, dtype=np.int64), cats=np.array([], dtype=object))


class Scope:
    """Who a rule is evaluated for (``population``, for aggregates) and its ``let`` names."""

    def __init__(
        self,
        ctx: EvalContext,
        *,
        population: np.ndarray | None = None,
        bindings: Mapping[str, Val] | None = None,
        text: str = "",
        where: str = "",
    ) -> None:
        self.ctx = ctx
        self.population = population
        self.bindings: dict[str, Val] = dict(bindings or {})
        self.text = text
        self.where = where
        self.aggregates: dict[tuple[Any, ...], Val] = {}

    def for_rule(self, text: str, where: str) -> Scope:
        """The same scope (sharing aggregates) reporting errors for another rule text."""
        other = Scope(self.ctx, population=self.population, bindings=self.bindings)
        other.aggregates = self.aggregates
        other.text, other.where = text, where
        return other

    def type_error(self, node: ast.Node, reason: str) -> RuleTypeError:
        """A type error pointing at ``node``."""
        return RuleTypeError(
            reason, text=self.text, column=node.column, width=node.width, where=self.where
        )


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
        from tags.rules.functions import call_function

        return call_function(node, scope)
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
        from tags.rules.compile import suggest

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
        return Val(BOOL, bool(_OPS[op](left.data, right.data)))
    if left.is_scalar:
        left, right, op = right, left, _SWAP[op]
    if left.kind == STR:
        return _compare_str(op, left, right, n)
    func = _OPS[op]
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
    func = _OPS[op]
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


def population_mask(scope: Scope) -> np.ndarray:
    """Rows aggregates are computed over (the tag's scope, else every row)."""
    if scope.population is None:
        return np.ones(scope.ctx.n, dtype=bool)
    return scope.population


__all__ += ["population_mask", "truth", "window_bounds"]
