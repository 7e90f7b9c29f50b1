"""The arrays the event index is made of, and what feature families read from it.

:class:`TypedEvents` (the events of one type sorted by customer and time),
:class:`PurchaseDays` and :class:`CategoryGroups` are built by
:class:`features.events.PreparedEvents`; :class:`EventArrays` is the part of its
interface the feature families (:mod:`features.families`) and the cutoff loop
(:mod:`features.cutoffs`) use, so that they need not import the index that calls them.

Times are int64 microseconds since the epoch (UTC). Amounts are summed as integers of
1/:data:`AMOUNT_SCALE` currency unit: exact, and independent of the events' order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from features.errors import FeaturesError

__all__ = [
    "AMOUNT_SCALE",
    "DAY_S",
    "DAY_US",
    "REL_MASK",
    "REL_MAX",
    "SEC_US",
    "CategoryGroups",
    "EventArrays",
    "PurchaseDays",
    "TypedEvents",
    "code_dtype",
    "prefix_sum",
    "seconds_base",
]

SEC_US = 1_000_000
DAY_US = 86_400 * SEC_US
DAY_S = 86_400
# Amounts are summed as integers of 1/10000 currency unit: exact and order independent.
AMOUNT_SCALE = 10_000
# A sort key holds the customer code in its high 32 bits and the seconds since the
# index's base second in its low 32 bits.
REL_MAX = 2**32 - 1
REL_MASK = np.int64(REL_MAX)
# Keys searched per block by TypedEvents.ends_before: 512 KB, inside a core's L2.
_BLOCK_KEYS = 1 << 16


class TypedEvents:
    """Events of one type sorted by (customer code, time).

    Only the search key and the segment bounds are always held (8 bytes per event).
    Times are read off the key when every event time is a whole second (else kept
    separately), and row positions are found again from the event type codes when the
    events came in the fact store's order; the full ``t_us`` and ``rows`` arrays are
    built on first access (the rule engine's windows use them) and then kept.
    """

    def __init__(
        self,
        key: np.ndarray,
        starts: np.ndarray,
        base_sec: int,
        *,
        t_us: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        find_rows: Callable[[], np.ndarray] | None = None,
    ) -> None:
        if rows is None and find_rows is None:
            raise FeaturesError("Expected event rows or a way to find them. Got neither.")
        self.key = key  # int64: code << 32 | (second - base), ascending
        self.starts = starts  # int64, n_customers + 1: segment bounds per customer code
        self.base_sec = base_sec
        self._t_us = t_us
        self._rows = rows
        self._find_rows = find_rows
        # Built on first use: prefix sums of fixed-point amounts (len + 1), and the
        # amounts with a trailing sentinel for reduceat (len + 1).
        self.amount_cs: np.ndarray | None = None
        self.amount: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.key)

    def t_at(self, at: np.ndarray | slice) -> np.ndarray:
        """int64 microseconds since the epoch of the events at ``at``."""
        if self._t_us is not None:
            return self._t_us[at]
        t = self.key[at] & REL_MASK
        t += self.base_sec
        t *= SEC_US
        return t

    def micros_until(self, cut_us: int, lo: int, hi: int, out: np.ndarray) -> None:
        """``cut_us - t_us`` of events ``lo:hi`` into the int64 ``out`` (no temporary)."""
        if self._t_us is not None:
            np.subtract(cut_us, self._t_us[lo:hi], out=out)
            return
        np.bitwise_and(self.key[lo:hi], REL_MASK, out=out)
        np.multiply(out, -SEC_US, out=out)
        out += cut_us - self.base_sec * SEC_US

    def ends_before(self, codes: np.ndarray, rels: np.ndarray, dtype: Any) -> list[np.ndarray]:
        """Per relative second of ``rels``, per customer of ``codes``: the end of its
        events before that second, i.e. ``searchsorted(key, code << 32 | rel, "left")``.

        One search per block of customers over that block's slice of the keys instead of
        one search per second over all keys: the slice stays in cache and the queries of
        a block are sorted (numpy starts each search where the last one ended), which
        at 1M customers costs about a third of the CPU of ``len(rels)`` whole-array
        searches. The results are the same positions.

        Args:
            codes: Customer codes, ascending (int64).
            rels: Seconds since :attr:`base_sec`, ascending, each in ``[0, REL_MAX]``.
            dtype: Integer dtype of the returned positions.

        Returns:
            One array of ``len(codes)`` positions per entry of ``rels``.
        """
        rels = np.asarray(rels, dtype=np.int64)
        m = len(rels)
        outs = [np.empty(len(codes), dtype=dtype) for _ in range(m)]
        if not len(codes) or not m:
            return outs
        starts = self.starts
        # Blocks of about _BLOCK_KEYS keys of the customers' own events.
        n_keys = int(starts[codes[-1] + 1] - starts[codes[0]])
        step = int(np.clip(_BLOCK_KEYS * len(codes) // max(n_keys, 1), 64, 1 << 16))
        for i0 in range(0, len(codes), step):
            block = codes[i0 : i0 + step]
            lo, hi = int(starts[block[0]]), int(starts[block[-1] + 1])
            queries = np.left_shift(block, 32)[:, None] | rels[None, :]
            found = np.searchsorted(self.key[lo:hi], queries.ravel(), side="left")
            found += lo
            found = found.reshape(len(block), m)
            for j in range(m):
                outs[j][i0 : i0 + len(block)] = found[:, j]
        return outs

    def seconds_at(self, at: np.ndarray | slice) -> np.ndarray:
        """Whole seconds since ``base_sec`` (floored) of the events at ``at``."""
        return self.key[at] & REL_MASK

    @property
    def t_us(self) -> np.ndarray:
        """int64 microseconds since the epoch, ascending per customer."""
        if self._t_us is None:
            self._t_us = self.t_at(slice(None))
        return self._t_us

    @property
    def rows(self) -> np.ndarray:
        """Row positions in the events frame (int32; int64 past 2**31 events), kept."""
        if self._rows is None:
            self._rows = self.rows_now()
        return self._rows

    def rows_now(self) -> np.ndarray:
        """:attr:`rows`, found again (and not kept) when they are not held."""
        if self._rows is not None:
            return self._rows
        assert self._find_rows is not None  # guaranteed by __init__
        return self._find_rows()


@dataclass(frozen=True)
class PurchaseDays:
    """Distinct purchase days per customer, in (customer, day) order."""

    row_cs: np.ndarray  # int32 (past 2**31 events int64), n_purchases + 1: prefix count
    # of first-of-day purchases
    code: np.ndarray  # int32 customer code per day row
    day: np.ndarray  # int32 UTC day number
    gap: np.ndarray  # int32 days since the customer's previous purchase day (0 if first)
    gap_sq_cs: np.ndarray  # int64, len + 1: prefix sums of gap**2


@dataclass(frozen=True)
class CategoryGroups:
    """Events of one type with a category, grouped by (customer, category)."""

    seconds: np.ndarray  # uint32 seconds since base_sec in (code, category, time) order
    bounds: np.ndarray  # int64, n_groups + 1
    code: np.ndarray  # int32 customer code per group
    cat: np.ndarray  # int32 category code per group (alphabetical rank)
    run_starts: np.ndarray  # int64: first group of each customer
    labels: np.ndarray  # object: category label per code


def prefix_sum(values: np.ndarray, dtype: Any = np.int64) -> np.ndarray:
    """``[0, cumsum(values)...]``: ``len(values) + 1`` entries in ``dtype``."""
    out = np.empty(len(values) + 1, dtype=dtype)
    out[0] = 0
    np.cumsum(values, out=out[1:])
    return out


def seconds_base(t_us: np.ndarray) -> int:
    """The first event's whole second (0 without events), the origin of relative times.

    Raises:
        FeaturesError: The events span :data:`REL_MAX` seconds (136 years) or more, which
            relative times in a sort key cannot hold.
    """
    base = int(t_us.min()) // SEC_US if len(t_us) else 0
    span = (int(t_us.max()) // SEC_US - base) if len(t_us) else 0
    if span >= REL_MAX:
        raise FeaturesError(
            f"Expected events to span less than 136 years. Got {span / DAY_S / 365.25:.0f} years."
        )
    return base


def code_dtype(n_categories: int) -> Any:
    """The smallest signed integer dtype holding codes -1 .. n_categories - 1."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories <= np.iinfo(dtype).max:
            return dtype
    return np.int64


class EventArrays(Protocol):
    """What the feature families and the cutoff loop read from the event index.

    :class:`features.events.PreparedEvents` implements it. Customers are coded by their
    rank by ``customer_id`` (codes ``0 .. n_customers - 1``).
    """

    @property
    def customers(self) -> pd.DataFrame:
        """The customers table, in code order."""
        ...

    @property
    def customer_ids(self) -> pa.Array:
        """The customer ids (large_string), in code order."""
        ...

    @property
    def n_customers(self) -> int:
        """Number of customers."""
        ...

    @property
    def signup_us(self) -> np.ndarray:
        """Signup time (us) per customer code."""
        ...

    @property
    def base_sec(self) -> int:
        """The second the sort keys count from."""
        ...

    @property
    def index_dtype(self) -> Any:
        """Integer dtype of positions into the events (int32 below 2**31 events)."""
        ...

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types present, sorted."""
        ...

    @property
    def orders_counted(self) -> bool:
        """Whether :meth:`order_counts` has been built (order ids no longer pending)."""
        ...

    def typed(self, event_type: str) -> TypedEvents:
        """The sorted events of ``event_type`` (empty when there are none)."""
        ...

    def amounts(self, event_type: str) -> tuple[np.ndarray, np.ndarray]:
        """(prefix sums of fixed-point amounts, amounts + sentinel) of ``event_type``."""
        ...

    def order_counts(self) -> np.ndarray:
        """Prefix count (over sorted purchases) of purchases opening a new order."""
        ...

    def days(self) -> PurchaseDays:
        """Distinct purchase days per customer."""
        ...

    def groups(self, event_type: str) -> CategoryGroups:
        """Events of ``event_type`` grouped by (customer, category)."""
        ...

    def birth_years(self, column: str) -> np.ndarray:
        """The customers' ``column`` as float64 years (NaN when missing)."""
        ...

    def attribute_codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """The customers' ``column`` as (category position per code, the categories)."""
        ...

    def drop_days(self) -> None:
        """Drop the purchase days (a later :meth:`days` builds them again)."""
        ...

    def drop_groups(self) -> None:
        """Drop the category groups (a later :meth:`groups` builds them again)."""
        ...

    def drop_amounts(self, event_types: Iterable[str]) -> None:
        """Drop the amount sums of ``event_types`` (built again on the next read)."""
        ...
