"""Event windows over :class:`features.events.PreparedEvents`: no hashing per rule.

The event index already codes customers as integers and sorts each event type by
(customer, time) (its interface is documented in :mod:`features.events`). Events of one
customer in a time window are then one contiguous run of its segment, so for every
customer at once a window is two ``searchsorted`` bounds; ``count`` is their
difference, ``sum`` a difference of the prepared fixed-point prefix sums and
``days_since`` the time of the last event before the upper bound. Bounds are cached per
(event type, time), so rules sharing a window edge share the work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.events import AMOUNT_SCALE, PreparedEvents
from tags.rules import ast
from tags.rules.windows import DAY_NS, NAT, arrow_strings, ceil_us, window_bounds

__all__ = ["PreparedEventIndex"]

_SEC_NS = 10**9
_SAMPLE = 100_000  # events sampled to judge how many fall on each side of a cut
_KEY_SPAN = 2**32  # typed(...).key is customer code << 32 | (second - base_sec)


def _frame_codes(prepared: PreparedEvents, ids: pa.Array, as_of_ns: int) -> np.ndarray:
    """The prepared customer code of each frame row (-1: customer not prepared).

    A frame from ``prepared.build_features(as_of)`` holds exactly the customers who
    signed up before ``as_of``, in code order: checked with one string comparison, which
    is far cheaper than hashing every id. Any other frame is matched by hashing.
    """
    known = arrow_strings(prepared.customers["customer_id"])
    codes = np.flatnonzero(prepared.signup_us < ceil_us(as_of_ns)).astype(np.int64)
    if (
        len(codes) == len(ids)
        and ids.null_count == 0
        and pc.all(pc.equal(known.take(pa.array(codes)), ids)).as_py()
    ):
        return codes
    found = pc.fill_null(pc.index_in(ids, value_set=known), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


class PreparedEventIndex:
    """Window aggregates per frame row, read from a :class:`PreparedEvents`.

    Args:
        prepared: Events coded and sorted by :func:`features.events.prepare_events`.
        customer_ids: The frame's customer ids, in row order (unique).
        as_of_ns: The evaluation time (ns since epoch, UTC); later events are ignored.
        codes: The prepared code of each frame row, when the caller knows them (the
            live path, whose rows are all prepared customers): no id is compared.
    """

    def __init__(
        self,
        prepared: PreparedEvents,
        customer_ids: pd.Series | pd.Index | np.ndarray,
        as_of_ns: int,
        *,
        codes: np.ndarray | None = None,
    ) -> None:
        self.n = len(customer_ids)
        self.as_of_ns = as_of_ns
        self._prep = prepared
        if codes is None:
            codes = _frame_codes(prepared, arrow_strings(customer_ids), as_of_ns)
        known = codes >= 0
        self._all_known = bool(known.all())
        self._known = known
        self._codes = codes if self._all_known else codes[known]
        self._bounds: dict[tuple[str, int], np.ndarray] = {}
        self._spans: dict[str, tuple[int, int]] = {}
        self._category_codes: dict[str, tuple[np.ndarray, dict[str, int]]] = {}

    def _spread(self, values: np.ndarray, fill: float) -> np.ndarray:
        """Per-known-customer values onto every frame row (``fill`` for the others)."""
        if self._all_known:
            return values
        out = np.full(self.n, fill)
        out[self._known] = values
        return out

    def _bound(self, event_type: str, t_ns: int) -> np.ndarray:
        """Per customer: index of its first ``event_type`` event at or after ``t_ns``."""
        key = (event_type, t_ns)
        found = self._bounds.get(key)
        if found is not None:
            return found
        typed = self._prep.typed(event_type)
        codes = self._codes
        first, last = self._span(event_type)
        t_us = ceil_us(t_ns)  # an event is before t_ns exactly when its t_us < this
        if t_us > last:
            # After every event of the type (e.g. as_of at the end of the data).
            found = typed.starts[codes + 1]
        elif t_us <= first:
            found = typed.starts[codes]
        elif (side := self._minority(typed.t_us, t_us, len(codes))) is not None:
            # Few events on one side of the cut (e.g. a cut near the end of the data):
            # find just those and count them per customer, instead of a search per customer.
            if side == "after":
                after = self._per_customer(typed.starts, np.flatnonzero(typed.t_us >= t_us))
                found = typed.starts[codes + 1] - after[codes]
            else:
                before = self._per_customer(typed.starts, np.flatnonzero(typed.t_us < t_us))
                found = typed.starts[codes] + before[codes]
        elif t_ns % _SEC_NS == 0:
            # Whole second: t < T exactly when floor(t to seconds) < T, so the
            # second-resolution sort key gives exact bounds. Clipping to [0, 2**32] maps
            # times before/after all events to the segment's start/end.
            rel = np.clip(t_ns // _SEC_NS - self._prep.base_sec, 0, _KEY_SPAN)
            found = np.searchsorted(typed.key, (codes << 32) + rel, side="left")
        else:
            before = typed.t_us < t_us
            found = self._runs(typed.starts, codes, before) + typed.starts[codes]
        found = found.astype(np.int64, copy=False)
        self._bounds[key] = found
        return found

    @staticmethod
    def _minority(t_us: np.ndarray, cut_us: int, n_queries: int) -> str | None:
        """Which side of the cut ("before"/"after") holds clearly fewer events than there
        are customers to search for, judged from a strided sample; ``None`` if neither."""
        if not len(t_us):
            return None
        sample = t_us[:: max(1, len(t_us) // _SAMPLE)]
        after = np.count_nonzero(sample >= cut_us) / len(sample) * len(t_us)
        limit = n_queries / 4
        if after < limit:
            return "after"
        if len(t_us) - after < limit:
            return "before"
        return None

    @staticmethod
    def _per_customer(starts: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """How many of ``positions`` (indices into the sorted events) each customer owns."""
        # side="right" - 1: the last segment starting at or before a position, i.e. the
        # non-empty one holding it (empty segments share their start with the next).
        owner = np.searchsorted(starts, positions, side="right") - 1
        return np.bincount(owner, minlength=len(starts) - 1)

    def _span(self, event_type: str) -> tuple[int, int]:
        """Earliest and latest time (us) of the type's events."""
        found = self._spans.get(event_type)
        if found is None:
            t_us = self._prep.typed(event_type).t_us
            found = (int(t_us.min()), int(t_us.max())) if len(t_us) else (0, -1)
            self._spans[event_type] = found
        return found

    @staticmethod
    def _runs(starts: np.ndarray, codes: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Sum of ``flags`` (booleans or integers) over each customer's segment."""
        cs = np.empty(len(flags) + 1, dtype=np.int64)
        cs[0] = 0
        np.cumsum(flags, out=cs[1:])
        return cs[starts[codes + 1]] - cs[starts[codes]]

    def _categories(self, event_type: str) -> tuple[np.ndarray, dict[str, int]]:
        found = self._category_codes.get(event_type)
        if found is None:
            rows = self._prep.typed(event_type).rows
            column = self._prep.strings_at("category", rows).combine_chunks()
            encoded = pc.dictionary_encode(column)
            codes = np.asarray(
                pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
            )
            lookup = {str(v): i for i, v in enumerate(encoded.dictionary.to_pylist())}
            found = (codes, lookup)
            self._category_codes[event_type] = found
        return found

    def aggregate(
        self,
        func: str,
        event_type: str,
        window: ast.Window | None,
        categories: tuple[str, ...] | None,
    ) -> np.ndarray:
        """``count``, ``sum`` or ``days_since`` of matching events, per frame row (float64)."""
        lo, hi = window_bounds(window, self.as_of_ns)
        empty = 0.0 if func in ("count", "sum") else np.nan
        if lo >= hi or event_type not in self._prep.event_types or not len(self._codes):
            return np.full(self.n, empty)
        if categories is not None:
            return self._spread(self._filtered(func, event_type, lo, hi, categories), empty)
        upper = self._bound(event_type, hi)
        lower = (
            self._prep.typed(event_type).starts[self._codes]
            if lo == NAT
            else self._bound(event_type, lo)
        )
        if func == "count":
            values = (upper - lower).astype("float64")
        elif func == "sum":
            cs, _ = self._prep.amounts(event_type)
            values = (cs[upper] - cs[lower]) / AMOUNT_SCALE
        else:
            values = np.full(len(upper), np.nan)
            seen = upper > lower
            t_us = self._prep.typed(event_type).t_us[upper[seen] - 1]
            values[seen] = (self.as_of_ns - t_us * 1000) / DAY_NS
        return self._spread(values, empty)

    def _filtered(
        self,
        func: str,
        event_type: str,
        lo: int,
        hi: int,
        categories: tuple[str, ...],
    ) -> np.ndarray:
        """The aggregate over events of some categories: one pass with a per-event flag."""
        typed = self._prep.typed(event_type)
        cat_codes, lookup = self._categories(event_type)
        wanted = [lookup[c] for c in categories if c in lookup]
        flags = np.isin(cat_codes, wanted)
        flags &= typed.t_us < ceil_us(hi)
        if lo != NAT:
            flags &= typed.t_us >= ceil_us(lo)
        starts, codes = typed.starts, self._codes
        if func == "count":
            return self._runs(starts, codes, flags).astype("float64")
        if func == "sum":
            _, amount = self._prep.amounts(event_type)
            cents = np.where(flags, np.rint(amount[:-1] * AMOUNT_SCALE), 0.0).astype(np.int64)
            return self._runs(starts, codes, cents) / AMOUNT_SCALE
        # The last flagged event of each segment (times ascend within a segment).
        last = np.maximum.accumulate(np.where(flags, np.arange(len(flags)), -1))
        begin, end = starts[codes], starts[codes + 1]
        has = end > begin
        idx = np.full(len(codes), -1, dtype=np.int64)
        idx[has] = last[end[has] - 1]
        seen = idx >= begin
        values = np.full(len(codes), np.nan)
        values[seen] = (self.as_of_ns - typed.t_us[idx[seen]] * 1000) / DAY_NS
        return values
