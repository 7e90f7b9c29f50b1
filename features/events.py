"""The event index: customers and events coded and sorted once, for any number of
cutoffs. This is the rule engine's documented interface to prepared events.

:func:`prepare_events` codes customers as integers (their rank by ``customer_id``; in
the fact store's order only the first id of each customer's run is looked up) and
splits events by type, sorted by ``(customer, time)`` (nothing to sort in the fact
store's order); the events of a customer before any cutoff are then a prefix of its
segment, found for all customers at once with one ``numpy.searchsorted``. Orders are
told apart by a 64-bit hash of the id's bytes, every equality confirmed on the text, so
no id becomes a Python object. :meth:`PreparedEvents.build_features` builds features
from it (:mod:`features.cutoffs`).

What readers outside feature building may rely on (``tags.rules.prepared`` reads event
windows from it):

* ``customers`` (the customers table in code order), ``customer_ids``, ``signup_us``
  (signup time in us per code), ``n_customers``, ``event_types``, ``events`` (the
  events frame it was prepared from) and ``base_sec``;
* ``typed(event_type)``, a :class:`~features.event_arrays.TypedEvents`: ``starts``
  (int64, ``n_customers + 1``: customer ``c``'s events are ``starts[c]:starts[c+1]``),
  ``t_us`` (int64 microseconds, ascending within a customer), ``key`` (int64
  ``code << 32 | (second - base_sec)``, ascending: whole-second bounds for every
  customer with one ``searchsorted``) and ``rows`` (positions in ``events``);
* ``amounts(event_type)``: prefix sums of the amounts in units of 1/:data:`AMOUNT_SCALE`
  (int64, exact, so sums are differences of two entries) and the amounts themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.coding import (
    COUNTING_MIN_FILL,
    counting_order,
    customer_runs,
    customer_time_sorted,
    dictionary_codes,
    first_of_order,
    micros,
    stable_order_by,
    string_hashes,
    take,
    to_arrow,
    type_codes,
)
from features.cutoffs import AsOf, build_cutoffs
from features.errors import FeaturesError, SchemaError
from features.event_arrays import (
    AMOUNT_SCALE,
    DAY_S,
    SEC_US,
    CategoryGroups,
    PurchaseDays,
    TypedEvents,
    code_dtype,
    prefix_sum,
    seconds_base,
)
from features.memory import release_arrow_memory
from features.schema import EVENT_DTYPES, check_amounts, check_customers, check_events
from features.spec import FeatureSpec

__all__ = [
    "AMOUNT_SCALE",
    "FEATURE_EVENT_COLUMNS",
    "PreparedEvents",
    "TypedEvents",
    "prepare_events",
]

# The event columns features read; product_id and quantity need not be loaded.
FEATURE_EVENT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "occurred_at",
    "event_type",
    "amount",
    "category",
    "order_id",
)
_I64 = np.int64
# One worker for preparation steps that overlap with the caller's work.
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-features")
# One worker splitting the largest event type while the caller splits the others.
_SPLITTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-split")
# Below this many events (live scoring of a few customers) the steps run inline: a
# hand-off to the worker costs more than the overlap saves.
_INLINE_EVENTS = 50_000
_T = TypeVar("_T")


def _submit(fn: Callable[..., _T], *args: Any, inline: bool) -> Future[_T]:
    """``fn(*args)`` on the background worker, or now (``inline``) as a done future."""
    if not inline:
        return _BACKGROUND.submit(fn, *args)
    done: Future[_T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # re-raised by result(), as from the worker
        done.set_exception(exc)
    return done


class PreparedEvents:
    """Customers and events coded and sorted once, ready for any number of cutoffs.

    Build with :func:`prepare_events`. The order and category structures of a type
    are built on first use and kept, so repeated calls do not redo them.
    """

    def __init__(self, customers: pd.DataFrame, events: pd.DataFrame) -> None:
        check_customers(customers)
        _check_events(events)
        ids = to_arrow(customers["customer_id"])
        order_c = pc.sort_indices(ids).to_numpy()
        if bool(np.all(order_c[1:] > order_c[:-1])):  # in id order already: no copy
            self.customers = customers.reset_index(drop=True)
        else:
            self.customers = customers.iloc[order_c].reset_index(drop=True)
        sorted_ids = ids.take(pa.array(order_c)).combine_chunks()
        self._sorted_ids = sorted_ids.cast(pa.large_string())
        self._attribute_codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self.n_customers = len(self.customers)
        self.signup_us = micros(self.customers["signup_at"])
        self._events = events
        self._typed: dict[str, TypedEvents] = {}
        self._days: PurchaseDays | None = None
        self._orders_cs: np.ndarray | None = None
        self._groups: dict[str, CategoryGroups] = {}

        # Event types are coded on another core while this one codes customers (both
        # are Arrow hash lookups that release the GIL).
        inline = len(events) < _INLINE_EVENTS
        typing = _submit(type_codes, to_arrow(events["event_type"]), inline=inline)
        heads, head_codes = customer_runs(to_arrow(events["customer_id"]), sorted_ids)
        t_all = micros(events["occurred_at"])
        type_code, type_names = typing.result()
        self.base_sec = seconds_base(t_all)
        self.event_types = tuple(type_names)
        unknown = head_codes < 0
        if len(heads) == len(t_all):
            # Every row its own run (a log in time order): the run codes are the event
            # codes; no run lengths to expand (four passes over all events saved).
            if bool(np.any(unknown)):  # events of unknown customers are ignored
                type_code[unknown] = len(type_names)
            code: np.ndarray | None = head_codes
            grouped = False
        else:
            run_length = np.diff(np.append(heads, len(t_all)))
            if bool(np.any(unknown)):  # events of unknown customers are ignored
                type_code[np.repeat(unknown, run_length)] = len(type_names)
            known = head_codes[~unknown]
            # The fact store's order (each customer one run, in id order, in time
            # order): every type's events are then already in (customer, time) order.
            grouped = bool(np.all(known[1:] > known[:-1]))
            del known
            if grouped:
                backwards = np.flatnonzero(t_all[1:] < t_all[:-1]) + 1
                grouped = bool(np.all(np.isin(backwards, heads, assume_unique=True)))
                del backwards
            code = None if grouped else np.repeat(head_codes, run_length)
            del run_length
        del unknown
        run_bounds = np.append(heads, len(t_all)) if grouped else None
        row_dtype = np.int32 if len(t_all) < 2**31 else _I64
        self.index_dtype = row_dtype

        def rows_of(k: int) -> Callable[[], np.ndarray]:
            return lambda: np.flatnonzero(type_code == k).astype(row_dtype)

        def split(k: int) -> TypedEvents:
            """The events of type ``k`` in (customer, time) order."""
            rows = np.flatnonzero(type_code == k)
            if code is not None:
                return sorted_typed(code[rows], rows, t_all, self.n_customers, self.base_sec)
            assert run_bounds is not None  # set whenever code is None
            t = t_all[rows]
            per_run = np.diff(np.searchsorted(rows, run_bounds))
            c = np.repeat(head_codes, per_run)
            counts = np.zeros(self.n_customers, dtype=_I64)
            keep = head_codes >= 0
            counts[head_codes[keep]] = per_run[keep]
            starts = prefix_sum(counts)
            # In the fact store's order a type's rows are found again on demand.
            return _typed_of(c, t, starts, self.base_sec, rows=None, find_rows=rows_of(k))

        # The largest type other than purchases is split on another core from the start
        # (a type's passes, gathers and counting sort run without the GIL).
        others = [k for k, name in enumerate(type_names) if name != "purchase"]
        largest: tuple[int, Future[TypedEvents]] | None = None
        if len(others) > 1 and not inline:
            sizes = np.bincount(type_code, minlength=len(type_names) + 1)
            big = max(others, key=lambda k: int(sizes[k]))
            others.remove(big)
            largest = (big, _SPLITTER.submit(split, big))
        # Purchases first: telling orders apart is the slowest step of the RFM family
        # and runs mostly without the GIL, on another core while the other types are
        # split.
        if "purchase" in type_names:
            self._typed["purchase"] = split(type_names.index("purchase"))
        self._order_flags: Future[np.ndarray] | None = _submit(self._new_order_flags, inline=inline)
        done = {k: split(k) for k in others}
        if largest is not None:
            done[largest[0]] = largest[1].result()
        for k, name in enumerate(type_names):  # in name order, as the types are listed
            if k in done:
                self._typed[name] = done[k]
        release_arrow_memory()

    @property
    def customer_ids(self) -> pa.Array:
        """The customer ids (large_string) in code order: ``customers["customer_id"]``."""
        return self._sorted_ids

    @property
    def events(self) -> pd.DataFrame:
        """The events frame this was prepared from (``typed(t).rows`` index into it)."""
        return self._events

    def typed(self, event_type: str) -> TypedEvents:
        """The sorted events of ``event_type`` (empty when there are none)."""
        found = self._typed.get(event_type)
        if found is None:
            empty = np.empty(0, dtype=_I64)
            found = TypedEvents(
                empty,
                np.zeros(self.n_customers + 1, dtype=_I64),
                self.base_sec,
                t_us=empty,
                rows=empty,
            )
            self._typed[event_type] = found
        return found

    def amounts(self, event_type: str) -> tuple[np.ndarray, np.ndarray]:
        """(prefix sums of fixed-point amounts, amounts + sentinel) of ``event_type``."""
        typed = self.typed(event_type)
        if typed.amount_cs is None or typed.amount is None:
            values = self._amount_values()
            amount = np.nan_to_num(values[typed.rows_now()], nan=0.0)
            _check_amount_total(amount, event_type)
            typed.amount_cs = prefix_sum(np.rint(amount * AMOUNT_SCALE).astype(_I64))
            typed.amount = np.append(amount, 0.0)
        return typed.amount_cs, typed.amount

    def _amount_values(self) -> np.ndarray:
        """Every event's amount as float64 (NaN where missing), in event order."""
        column = self._events["amount"]
        return (  # the frame's own array when it is float64 already (no copy)
            column.to_numpy()
            if column.dtype == np.float64
            else column.to_numpy(dtype=np.float64, na_value=np.nan)
        )

    def strings_at(self, column: str, rows: np.ndarray) -> pa.ChunkedArray:
        """The text column ``column`` of the events at positions ``rows``."""
        return take(self._events[column], rows)

    def _codes_of(self, typed: TypedEvents) -> np.ndarray:
        return np.repeat(np.arange(self.n_customers, dtype=_I64), np.diff(typed.starts))

    @property
    def orders_counted(self) -> bool:
        """Whether :meth:`order_counts` is built (no order ids are being hashed)."""
        return self._order_flags is None

    def order_counts(self) -> np.ndarray:
        """Prefix count (over sorted purchases) of purchases opening a new order."""
        if self._orders_cs is None:
            if self._order_flags is None:
                raise FeaturesError("Expected order flags to be computed once. Got none.")
            self._orders_cs = prefix_sum(self._order_flags.result(), self.index_dtype)
            self._order_flags = None
        return self._orders_cs

    def _new_order_flags(self) -> np.ndarray:
        """Per sorted purchase: True if it opens an order new to its customer.

        A purchase without ``order_id`` is an order of its own. Order ids are compared
        by a 64-bit hash of their text, and every equality the hash suggests is
        confirmed on the text itself, so the result is exact; no id is materialised
        as a Python object and only ids sharing a hash are dictionary-encoded.
        """
        p = self.typed("purchase")
        if not len(p):
            return np.zeros(0, dtype=bool)
        order_ids = self._events["order_id"]
        rows = p.rows_now()
        ascending = bool(np.all(rows[1:] > rows[:-1]))
        mask = np.zeros(len(order_ids), dtype=bool)
        mask[rows] = True
        hashes, nulls = string_hashes(to_arrow(order_ids).filter(pa.array(mask)))
        if not ascending:  # back from row order to (customer, time) order
            # Each purchase's rank among the purchases in row order, by one scatter
            # and one gather (an argsort of the rows costs several times more).
            rank_of_row = np.empty(len(order_ids), dtype=self.index_dtype)
            in_row_order = np.flatnonzero(mask)
            rank_of_row[in_row_order] = np.arange(len(in_row_order), dtype=self.index_dtype)
            rank = rank_of_row[rows]
            del rank_of_row, in_row_order
            hashes, nulls = hashes[rank], nulls[rank]
            del rank
        del mask
        flags = first_of_order(
            self._codes_of(p), hashes, nulls, lambda at: take(order_ids, rows[at])
        )
        release_arrow_memory()
        return flags

    def days(self) -> PurchaseDays:
        """Distinct purchase days per customer (built on first use)."""
        if self._days is None:
            p = self.typed("purchase")
            code = self._codes_of(p).astype(np.int32)
            # UTC days start at whole seconds: the floored second gives the day exactly.
            day = p.seconds_at(slice(None))
            day += self.base_sec
            day //= DAY_S
            day = day.astype(np.int32)
            flag = np.ones(len(p), dtype=bool)
            flag[1:] = (code[1:] != code[:-1]) | (day[1:] != day[:-1])
            d_code, d_day = code[flag], day[flag]
            del code, day
            first = np.ones(len(d_code), dtype=bool)
            first[1:] = d_code[1:] != d_code[:-1]
            gap = np.zeros(len(d_code), dtype=np.int32)
            gap[1:] = d_day[1:] - d_day[:-1]
            gap[first] = 0
            wide = gap.astype(_I64)
            self._days = PurchaseDays(
                row_cs=prefix_sum(flag, self.index_dtype),
                code=d_code,
                day=d_day,
                gap=gap,
                gap_sq_cs=prefix_sum(wide * wide),
            )
        return self._days

    def groups(self, event_type: str) -> CategoryGroups:
        """Events of ``event_type`` grouped by (customer, category) (built on first use)."""
        found = self._groups.get(event_type)
        if found is not None:
            return found
        typed = self.typed(event_type)
        code = self._codes_of(typed)
        raw, dictionary = dictionary_codes(self.strings_at("category", typed.rows_now()))
        labels = np.asarray(dictionary.to_pylist(), dtype=object)
        rank = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
        remap = np.empty(len(labels), dtype=_I64)
        remap[rank] = np.arange(len(labels), dtype=_I64)
        keep = np.flatnonzero(raw >= 0)
        cat = remap[raw[keep]]
        g_code = code[keep]
        t = typed.seconds_at(keep).astype(np.uint32)
        cat_bits = max(len(labels) - 1, 1).bit_length()
        order = stable_order_by((g_code << cat_bits) | cat)
        g_code, cat, t = g_code[order], cat[order], t[order]
        n = len(t)
        new = np.ones(n, dtype=bool)
        new[1:] = (g_code[1:] != g_code[:-1]) | (cat[1:] != cat[:-1])
        starts = np.flatnonzero(new)
        group_code = g_code[starts]
        run_new = np.ones(len(starts), dtype=bool)
        run_new[1:] = group_code[1:] != group_code[:-1]
        found = CategoryGroups(
            seconds=t,
            bounds=np.append(starts, n).astype(_I64),
            code=group_code.astype(np.int32),
            cat=cat[starts].astype(np.int32),
            run_starts=np.flatnonzero(run_new).astype(_I64),
            labels=labels[rank] if len(labels) else labels,
        )
        self._groups[event_type] = found
        self._release_pages()
        return found

    def _release_pages(self) -> None:
        """Hand back the pages Arrow freed while a structure was built (see
        :func:`features.memory.release_arrow_memory`)."""
        release_arrow_memory()

    def build_features(
        self,
        as_of: AsOf | Sequence[AsOf],
        *,
        spec: FeatureSpec | None = None,
        on_cutoff: Callable[[pd.Timestamp], None] | None = None,
        release: bool = True,
    ) -> pd.DataFrame:
        """Features as of one date, or a long table over several dates.

        Args:
            as_of: A cutoff, or a list of them (then the result has an ``as_of`` column
                second and is ordered by ``as_of``, then ``customer_id``).
            spec: The feature spec (default: the shipped one).
            on_cutoff: Called after each cutoff is done (progress display).
            release: Drop the structures only some families read (purchase days,
                category groups, amount sums; ~0.1x the events) at the last cutoff,
                right after their last reader, which lowers the peak; a later call
                builds them again (about a second for 1M customers). Pass ``False``
                when calling again, one date at a time.

        Raises:
            FeaturesError: A cutoff is not a whole-second date/time.
            SpecError: The spec names an attribute the customers table lacks.
        """
        return build_cutoffs(self, as_of, spec=spec, on_cutoff=on_cutoff, release=release)

    def drop_days(self) -> None:
        """Drop the purchase days (a later :meth:`days` builds them again)."""
        self._days = None

    def drop_groups(self) -> None:
        """Drop the category groups (a later :meth:`groups` builds them again)."""
        self._groups.clear()

    def drop_amounts(self, event_types: Iterable[str]) -> None:
        """Drop the amount sums of ``event_types`` (a later :meth:`amounts` builds them)."""
        for event_type in event_types:
            typed = self._typed.get(event_type)
            if typed is not None:
                typed.amount_cs = typed.amount = None

    def birth_years(self, column: str) -> np.ndarray:
        """The customers' ``column`` as float64 years (NaN when missing or not a number)."""
        return pd.to_numeric(self.customers[column], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )

    def attribute_codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """The customers' ``column`` as (category position per customer code, -1 when
        missing; the categories: its distinct values as strings, sorted), coded once."""
        found = self._attribute_codes.get(column)
        if found is None:
            values = to_arrow(self.customers[column].astype("string"))
            # Distinct values sorted by code point (UTF-8 byte order is the same), coded
            # with one Arrow hash lookup; categories of pandas' default string dtype:
            # what a Parquet snapshot of the frame reads back as.
            distinct = pc.unique(values.drop_null())
            distinct = distinct.take(pc.sort_indices(distinct))
            categories = pd.Index(distinct.to_pylist(), dtype="str")
            codes = pc.fill_null(pc.index_in(values, value_set=distinct), -1).to_numpy(
                zero_copy_only=False
            )
            found = (codes.astype(code_dtype(len(categories))), categories)
            self._attribute_codes[column] = found
        return found


# Sums of fixed-point amounts are exact below 2**63 units; stay a margin inside it.
_AMOUNT_TOTAL_LIMIT = 2.0**62 / AMOUNT_SCALE


def sorted_typed(
    code: np.ndarray, rows: np.ndarray, t_all: np.ndarray, n_customers: int, base_sec: int
) -> TypedEvents:
    """The events at ``rows`` (ascending positions; ``code``: their customer codes,
    non-negative) sorted by (customer, time), as the index holds one event type.

    Shared by :class:`PreparedEvents` and the live path's small index
    (:mod:`features.small_events`), so both sort and key events the same way.
    ``code`` is used as scratch space (both callers pass a fresh gather).
    """
    row_dtype = np.int32 if len(t_all) < 2**31 else _I64
    # Times are gathered for the time-order check only when the codes call for it: in
    # the fact store's order (codes ascending) the sort below gathers them itself.
    t = t_all[rows] if _customers_unsorted(code, n_customers) else None
    if t is not None and bool(np.all(t[1:] >= t[:-1])):
        # A log in time order: one stable counting sort by customer. The search keys
        # are made in arrival order and gathered once (not the times, then keys made
        # from them), and the rows are gathered as int32 (half the bytes to move);
        # the sort's counts are the segment sizes.
        order, counts = counting_order(code, n_customers)
        t_us = None if whole_seconds(t) else t[order]
        # The gathered times (a copy) become the keys in place, and the codes their
        # high bits: no array beyond the sorted results is allocated (each fresh array
        # costs page faults, about as much as a pass over it).
        key = np.floor_divide(t, SEC_US, out=t)
        key -= base_sec
        key |= np.left_shift(code, 32, out=code)
        sorted_key = key[order]
        del key, t
        sorted_rows = rows.astype(row_dtype)[order]
        return TypedEvents(sorted_key, prefix_sum(counts), base_sec, t_us=t_us, rows=sorted_rows)
    del t
    rows, c, t = customer_time_sorted(code, rows, t_all, n_customers)
    # One sequential count over the sorted codes, not one binary search per customer.
    starts = prefix_sum(np.bincount(c, minlength=n_customers))
    return _typed_of(c, t, starts, base_sec, rows=rows.astype(row_dtype), find_rows=None)


# Leading codes checked for a descent before the whole array is: a log in time order
# shows one within a few events, so the full pass is only paid by sorted codes.
_DESCENT_PROBE = 4096


def _customers_unsorted(code: np.ndarray, n_customers: int) -> bool:
    """Whether events with customer codes ``code`` may be a log in time order that the
    counting sort should place (its times ascending, checked by the caller): codes not
    already ascending (then nothing needs sorting), and not far fewer events than
    customers (the count array would cost more than a comparison sort; the live path's
    few customers)."""
    n = len(code)
    if n < 2 or n * COUNTING_MIN_FILL < n_customers:
        return False
    head = code[: _DESCENT_PROBE + 1]
    return bool(np.any(head[1:] < head[:-1])) or bool(np.any(code[1:] < code[:-1]))


# Block of times checked at a time for whole seconds: the remainders stay in cache.
_SECONDS_BLOCK = 1 << 17


def whole_seconds(t_us: np.ndarray) -> bool:
    """Whether every time (int64 microseconds) is a whole second, checked block by
    block (no temporary the size of ``t_us``)."""
    for lo in range(0, len(t_us), _SECONDS_BLOCK):
        if bool(np.any(t_us[lo : lo + _SECONDS_BLOCK] % SEC_US)):
            return False
    return True


def _typed_of(
    c: np.ndarray,
    t: np.ndarray,
    starts: np.ndarray,
    base_sec: int,
    *,
    rows: np.ndarray | None,
    find_rows: Callable[[], np.ndarray] | None,
) -> TypedEvents:
    """:class:`TypedEvents` of sorted codes ``c`` and times ``t`` (``c`` is reused)."""
    # Whole-second times (the usual case) are read off the key: no copy kept.
    whole = whole_seconds(t)
    key = np.floor_divide(t, SEC_US)
    key -= base_sec
    key |= np.left_shift(c, 32, out=c)
    return TypedEvents(
        key, starts, base_sec, t_us=None if whole else t, rows=rows, find_rows=find_rows
    )


def _check_amount_total(amount: np.ndarray, event_type: str) -> None:
    """Refuse amounts whose fixed-point prefix sums would leave int64 (never wrap)."""
    total = float(amount.sum())
    if not total < _AMOUNT_TOTAL_LIMIT:
        raise FeaturesError(
            f"Expected the amounts of all {event_type} events to sum to less than "
            f"{_AMOUNT_TOTAL_LIMIT:.3e} (the exact fixed-point range). Got {total:.3e}."
        )


def _check_events(events: pd.DataFrame) -> None:
    """Canonical events, or the subset of their columns that features read."""
    if all(c in events.columns for c in EVENT_DTYPES):
        check_events(events)
        return
    subset = events.reindex(columns=list(FEATURE_EVENT_COLUMNS))
    missing = [c for c in FEATURE_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise SchemaError(
            f"The events table must have columns {list(FEATURE_EVENT_COLUMNS)}. "
            f"Missing {missing}; got {list(events.columns)} instead."
        )
    for column in FEATURE_EVENT_COLUMNS:
        got, want = str(subset[column].dtype), EVENT_DTYPES[column]
        if got != want and not (want == "string" and got in ("str", "string")):
            raise SchemaError(
                f"Column '{column}' of the events table must have dtype {want}. Got {got} instead."
            )
    check_amounts(subset["amount"])


def prepare_events(customers: pd.DataFrame, events: pd.DataFrame) -> PreparedEvents:
    """Code and sort canonical customers and events once, for many cutoffs.

    Events of customers not in ``customers`` are ignored.

    Raises:
        SchemaError: A table breaks the fact-tag contract.
    """
    return PreparedEvents(customers, events)
