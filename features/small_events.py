"""The event index of a handful of customers, built from plain arrays (the live path).

:class:`SmallEvents` is a :class:`~features.events.PreparedEvents` whose customers and
events come as numpy/Arrow arrays instead of canonical frames: no DataFrame, no
Arrow hash of every id, no background hand-off. Live scoring (``scoring.live``) builds
one per call for the posted customers; the feature families
(:mod:`features.families`, via :func:`features.cutoffs.cutoff_columns`) and the rule
engine's event windows then read it exactly as they read the batch index, so a
customer's features are computed by the same kernels in both paths. The structures
the families read (per-type sorted keys, amount sums, order flags, purchase days,
category groups) are built by the batch index's own code
(:func:`features.events.sorted_typed`, :func:`features.coding.first_of_order` (keyed
by exact dictionary codes of the order ids rather than their hashes), the
inherited ``days``/``groups``/``amounts``); only how the inputs reach them differs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.coding import first_of_order
from features.errors import FeaturesError
from features.event_arrays import (
    DAY_S,
    CategoryGroups,
    PurchaseDays,
    code_dtype,
    prefix_sum,
    seconds_base,
)
from features.events import PreparedEvents, sorted_typed
from features.schema import TIMESTAMP_DTYPE

__all__ = ["CustomerArrays", "EventColumns", "SmallEvents", "category_strings"]

_I64 = np.int64
_TEXT = pa.large_string()
# Up to this many events of a type, the small index groups them by category in Python.
FEW_EVENTS = 256


@dataclass(frozen=True)
class CustomerArrays:
    """Customers as arrays, in any order (ids unique and non-empty, checked by the caller).

    Attributes:
        ids: Customer ids.
        signup_us: Signup time per customer (int64 us since the epoch, UTC).
        attributes: Attribute name -> values per customer: ``list`` of ``str``/``None``
            for string attributes, float64 (NaN: missing) for numbers, int64 us
            (``NaT`` as int64 min) for dates.
        dtypes: Attribute name -> the canonical pandas dtype (``features.schema``).
    """

    ids: Sequence[str]
    signup_us: np.ndarray
    attributes: Mapping[str, Any]
    dtypes: Mapping[str, Any]


@dataclass(frozen=True)
class EventColumns:
    """Events as arrays (one entry per event, any order), checked by the caller.

    Attributes:
        customer: Position of each event's customer in ``CustomerArrays.ids`` (-1:
            not a posted customer; ignored, as the batch index ignores unknown ids).
        t_us: Event time (int64 us since the epoch, UTC).
        type_code: Event type per event, as a position in ``type_names`` (no nulls).
        type_names: The event type names the codes index.
        amount: float64, NaN where missing.
        category: Text (large_string), nulls allowed.
        order_id: Text (large_string), nulls allowed.
    """

    customer: np.ndarray
    t_us: np.ndarray
    type_code: np.ndarray
    type_names: Sequence[str]
    amount: np.ndarray
    category: pa.Array
    order_id: pa.Array


class SmallEvents(PreparedEvents):
    """The event index of a few customers from arrays (see the module docstring).

    Args:
        customers: The customers (coded by their rank by id, as the batch index does).
        events: Their events.

    Raises:
        FeaturesError: The events span 136 years or more (the sort key's range).
    """

    def __init__(self, customers: CustomerArrays, events: EventColumns) -> None:
        # The batch constructor is not called: it codes frames. Every attribute the
        # inherited methods read is set here from the arrays.
        ids = list(customers.ids)
        order = sorted(range(len(ids)), key=ids.__getitem__)  # code = rank by id
        rank = np.empty(len(ids), dtype=_I64)
        rank[order] = np.arange(len(ids), dtype=_I64)
        self._order = np.asarray(order, dtype=_I64)
        self._ids = [ids[i] for i in order]
        self._sorted_ids = pa.array(self._ids, _TEXT)
        self._source = customers
        self._frame: pd.DataFrame | None = None
        self._attribute_codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self.n_customers = len(ids)
        self.signup_us = np.asarray(customers.signup_us, dtype=_I64)[self._order]
        self._typed = {}
        self._days = None
        self._orders_cs = None
        self._order_flags = None
        self._groups = {}
        self._amount = np.asarray(events.amount, dtype=np.float64)
        self._text = {"category": events.category, "order_id": events.order_id}

        t_all = np.asarray(events.t_us, dtype=_I64)
        self.base_sec = seconds_base(t_all)
        self.index_dtype = np.int32 if len(t_all) < 2**31 else _I64
        kinds = np.asarray(events.type_code, dtype=_I64)
        counts = np.bincount(kinds, minlength=len(events.type_names))
        present = [int(k) for k in np.flatnonzero(counts)]
        self.event_types = tuple(sorted(events.type_names[k] for k in present))
        posted = np.asarray(events.customer, dtype=_I64)
        known = posted >= 0
        code = np.where(known, rank[np.where(known, posted, 0)], -1)
        for k in present:
            rows = np.flatnonzero((kinds == k) & known)
            self._typed[events.type_names[k]] = sorted_typed(
                code[rows], rows, t_all, self.n_customers, self.base_sec
            )

    @property
    def customers(self) -> pd.DataFrame:  # type: ignore[override]
        """The canonical customers table in code order (built on first use only)."""
        if self._frame is None:
            src = self._source
            data: dict[str, Any] = {
                "customer_id": pd.array(self._ids, dtype="string"),
                "signup_at": pd.DatetimeIndex(self.signup_us.astype("datetime64[us]"))
                .tz_localize("UTC")
                .astype(TIMESTAMP_DTYPE)
                .array,
            }
            for name, values in src.attributes.items():
                data[name] = _attribute_column(values, src.dtypes[name], self._order)
            self._frame = pd.DataFrame(data, copy=False)
        return self._frame

    @property
    def customer_ids(self) -> pa.Array:
        """The customer ids (large_string) in code order."""
        return self._sorted_ids

    @property
    def events(self) -> pd.DataFrame:
        """Not held: the small index is built from arrays, not from a frame."""
        raise FeaturesError("Expected a frame-built event index. Got the live path's arrays.")

    def groups(self, event_type: str) -> CategoryGroups:
        """As :meth:`PreparedEvents.groups`, the same arrays; up to :data:`FEW_EVENTS`
        events in Python, where the batch code's ~20 array steps cost more than the
        events (a live call's one customer, issue 20)."""
        found = self._groups.get(event_type)
        if found is not None:
            return found
        typed = self.typed(event_type)
        if len(typed) > FEW_EVENTS:
            return super().groups(event_type)
        names = self._text["category"].take(pa.array(typed.rows_now())).to_pylist()
        # Arrow's dictionary numbers labels by first appearance; the batch code ranks
        # them by a stable sort of numpy strings, which drop trailing NULs.
        first = list(dict.fromkeys(c for c in names if c is not None))
        rank = sorted(range(len(first)), key=lambda k: first[k].rstrip("\x00"))
        cat_of = {first[k]: r for r, k in enumerate(rank)}
        code = self._codes_of(typed).tolist()
        seconds = typed.seconds_at(slice(None)).tolist()
        # (customer, category) order, stable: events keep their time order in a group.
        kept = sorted(
            ((code[i], cat_of[c], seconds[i]) for i, c in enumerate(names) if c is not None),
            key=lambda e: (e[0], e[1]),
        )
        starts = [k for k in range(len(kept)) if k == 0 or kept[k][:2] != kept[k - 1][:2]]
        runs = [j for j, k in enumerate(starts) if j == 0 or kept[k][0] != kept[starts[j - 1]][0]]
        found = CategoryGroups(
            seconds=np.array([e[2] for e in kept], dtype=np.uint32),
            bounds=np.array([*starts, len(kept)], dtype=_I64),
            code=np.array([kept[k][0] for k in starts], dtype=np.int32),
            cat=np.array([kept[k][1] for k in starts], dtype=np.int32),
            run_starts=np.array(runs, dtype=_I64),
            labels=np.array([first[k] for k in rank], dtype=object),
        )
        self._groups[event_type] = found
        return found

    def days(self) -> PurchaseDays:
        """As :meth:`PreparedEvents.days`, the same arrays; up to :data:`FEW_EVENTS`
        purchases in Python (the batch code's ~15 array steps cost more)."""
        p = self.typed("purchase")
        if self._days is not None or len(p) > FEW_EVENTS:
            return super().days()
        codes = self._codes_of(p).tolist()
        # UTC days start at whole seconds: the floored second gives the day exactly.
        days = [(s + self.base_sec) // DAY_S for s in p.seconds_at(slice(None)).tolist()]
        flag = [
            k == 0 or codes[k] != codes[k - 1] or days[k] != days[k - 1] for k in range(len(days))
        ]
        kept = [(codes[k], days[k]) for k in range(len(days)) if flag[k]]
        gaps = [
            0 if j == 0 or kept[j][0] != kept[j - 1][0] else kept[j][1] - kept[j - 1][1]
            for j in range(len(kept))
        ]
        self._days = PurchaseDays(
            row_cs=np.array([0, *itertools.accumulate(flag)], dtype=self.index_dtype),
            code=np.array([c for c, _ in kept], dtype=np.int32),
            day=np.array([d for _, d in kept], dtype=np.int32),
            gap=np.array(gaps, dtype=np.int32),
            gap_sq_cs=np.array([0, *itertools.accumulate(g * g for g in gaps)], dtype=_I64),
        )
        return self._days

    def _release_pages(self) -> None:
        """Nothing to hand back: a few customers' structures free a few kilobytes,
        while asking Arrow's pool to release costs ~30 us a call (issue 20)."""

    def _amount_values(self) -> np.ndarray:
        return self._amount

    def strings_at(self, column: str, rows: np.ndarray) -> pa.ChunkedArray:
        """The text column ``column`` of the events at positions ``rows``."""
        return pa.chunked_array([self._text[column].take(pa.array(rows))], _TEXT)

    @property
    def orders_counted(self) -> bool:
        """Order flags are computed on first use here (no background work is pending)."""
        return True

    def order_counts(self) -> np.ndarray:
        """Prefix count (over sorted purchases) of purchases opening a new order."""
        if self._orders_cs is None:
            self._orders_cs = prefix_sum(self._new_order_flags(), self.index_dtype)
        return self._orders_cs

    def _new_order_flags(self) -> np.ndarray:
        p = self.typed("purchase")
        if not len(p):
            return np.zeros(0, dtype=bool)
        ids = self._text["order_id"].take(pa.array(p.rows))
        if len(p) <= FEW_EVENTS:
            # What first_of_order decides, in Python for a few purchases: a purchase
            # without an order id is its own order, else it opens one when no earlier
            # purchase of its customer (purchases in (customer, time) order) has its id.
            seen: set[tuple[int, str]] = set()
            flags = []
            for key in zip(self._codes_of(p).tolist(), ids.to_pylist(), strict=True):
                flags.append(key[1] is None or key not in seen)
                seen.add(key)
            return np.array(flags, dtype=bool)
        # first_of_order needs equal ids to get equal keys: dictionary codes are exact
        # keys (no collision), one Arrow call where string_hashes' word loop makes ~30
        # numpy calls on a live call's few purchases.
        codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
        if ids.null_count:
            nulls = np.isnan(codes)
            codes = np.where(nulls, 0, codes)
        else:
            nulls = np.zeros(len(codes), dtype=bool)
        chunked = pa.chunked_array([ids], _TEXT)
        return first_of_order(
            self._codes_of(p),
            codes.astype(np.uint64),
            nulls,
            lambda at: chunked.take(pa.array(at)),
        )

    def birth_years(self, column: str) -> np.ndarray:
        """The customers' ``column`` as float64 years (NaN when missing)."""
        values = self._source.attributes.get(column)
        if isinstance(values, np.ndarray) and values.dtype == np.float64:
            return values[self._order]
        return super().birth_years(column)

    def attribute_codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """As :meth:`PreparedEvents.attribute_codes` (distinct values sorted by code
        point), read off the posted strings without a frame."""
        values = self._source.attributes.get(column)
        if not isinstance(values, list) or str(self._source.dtypes.get(column)) != "string":
            return super().attribute_codes(column)
        found = self._attribute_codes.get(column)
        if found is None:
            in_order = [values[i] for i in self._order]
            distinct = sorted({v for v in in_order if v is not None})
            position = {v: k for k, v in enumerate(distinct)}
            codes = np.array(
                [-1 if v is None else position[v] for v in in_order],
                dtype=code_dtype(len(distinct)),
            )
            found = (codes, _categories(tuple(distinct)))
            self._attribute_codes[column] = found
        return found


def _attribute_column(values: Any, dtype: Any, order: np.ndarray) -> Any:
    """One canonical customers column (code order) from the arrays' values."""
    if isinstance(values, list):
        return pd.array([values[i] for i in order], dtype="string")
    array = np.asarray(values)[order]
    if str(dtype) == "Int64":
        return pd.array(array, dtype="Float64").astype("Int64")
    if array.dtype == _I64:  # dates: int64 us, NaT as int64 min
        stamps = array.astype("datetime64[us]")
        return pd.DatetimeIndex(stamps).tz_localize("UTC").astype(dtype).array
    return array


@functools.lru_cache(maxsize=4096)
def _categories(values: tuple[str, ...]) -> pd.Index:
    """The categories index of ``values`` (kept: building a text index costs ~0.2 ms,
    and a live call's attributes take few distinct values; indexes are immutable)."""
    return pd.Index(list(values), dtype="str")


_STRINGS: dict[int, tuple[pd.Index, tuple[str, ...]]] = {}


def category_strings(categories: pd.Index) -> tuple[str, ...]:
    """``categories`` as a tuple of ``str``, remembered per index object (the live
    path's category indexes are shared, see :func:`_categories`)."""
    found = _STRINGS.get(id(categories))
    if found is None or found[0] is not categories:
        if len(_STRINGS) >= 4096:
            _STRINGS.clear()
        found = (categories, tuple(str(c) for c in categories))
        _STRINGS[id(categories)] = found
    return found[1]
