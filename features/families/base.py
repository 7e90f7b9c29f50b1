"""One cutoff of a feature build: :class:`Cutoff`, the window bounds every family reads.

The events of a customer before a cutoff are a prefix of its segment of the sorted
events; its events in the last ``d`` days are the tail of that prefix. Both bounds come
from one ``searchsorted`` over the sort keys for all customers at once, cached for the
cutoff, so counts and fixed-point sums of any window are differences of two lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.event_arrays import AMOUNT_SCALE, DAY_S, DAY_US, REL_MAX, SEC_US, EventArrays

__all__ = ["KEEP_ROWS", "Coded", "Cutoff"]

_I64 = np.int64
# Rows (customers) up to which a cutoff keeps per-type arrays its families share.
KEEP_ROWS = 4096


@dataclass(frozen=True)
class Coded:
    """One cutoff's values of a ``category`` feature: positions in ``categories``
    (-1 for null)."""

    codes: np.ndarray
    categories: pd.Index


class Cutoff:
    """Feature computations at one cutoff for the customers ``codes``.

    Args:
        prep: The event index.
        cut_us: The cutoff (us since the epoch, UTC; a whole second).
        codes: Customer codes of the rows (ascending).
    """

    def __init__(
        self,
        prep: EventArrays,
        cut_us: int,
        codes: np.ndarray,
        windows: Mapping[str, Iterable[int]] | None = None,
    ) -> None:
        self.p = prep
        self.cut_us = cut_us
        self.rel = cut_us // SEC_US - prep.base_sec
        self.codes = codes
        self._ends: dict[tuple[str, int], np.ndarray] = {}
        # Per event type, the look-backs (days) its readers will ask for: the first
        # request finds all their bounds in one pass (TypedEvents.ends_before).
        self._planned = {t: frozenset(days) for t, days in (windows or {}).items()}
        self._tenure: np.ndarray | None = None
        self._n_days: np.ndarray | None = None
        self._since: dict[str, np.ndarray] = {}
        self._starts: dict[str, np.ndarray] = {}

    def start(self, event_type: str) -> np.ndarray:
        """Per customer, the start of its events of ``event_type`` (kept, read-only, up
        to :data:`KEEP_ROWS` customers: every family asks for it)."""
        found = self._starts.get(event_type)
        if found is not None:
            return found
        found = self.p.typed(event_type).starts[self.codes]
        if len(self.codes) <= KEEP_ROWS:
            found.flags.writeable = False
            self._starts[event_type] = found
        return found

    def end(self, event_type: str, back_days: int = 0) -> np.ndarray:
        """Per customer, the end of its events of ``event_type`` before cut - back_days."""
        k = (event_type, back_days)
        found = self._ends.get(k)
        if found is not None:
            return found
        typed = self.p.typed(event_type)
        planned = self._planned.get(event_type, frozenset())
        if back_days in planned:
            # Once per type: a bound dropped by its readers and asked for again is
            # searched alone below.
            del self._planned[event_type]
            rels = {d: self._rel(d) for d in planned}
            ascending = sorted(set(rels.values()))
            ends = typed.ends_before(self.codes, np.array(ascending), self.p.index_dtype)
            by_rel = dict(zip(ascending, ends, strict=True))
            for d, rel in rels.items():
                self._ends[(event_type, d)] = by_rel[rel]
            return self._ends[k]
        found = np.searchsorted(
            typed.key, (self.codes << 32) | self._rel(back_days), side="left"
        ).astype(self.p.index_dtype)
        self._ends[k] = found
        return found

    def _rel(self, back_days: int) -> int:
        """The cutoff ``back_days`` earlier, in key seconds (clamped to the key's range)."""
        return min(max(self.rel - back_days * DAY_S, 0), REL_MAX)

    def count(self, event_type: str, back_days: int = 0) -> np.ndarray:
        """Events of ``event_type`` in the last ``back_days`` days (0: all history)."""
        return (
            self.end(event_type) - self.end(event_type, back_days)
            if back_days
            else (self.end(event_type) - self.start(event_type))
        )

    def amount(self, event_type: str, back_days: int = 0) -> np.ndarray:
        """Sum of ``event_type`` amounts in the last ``back_days`` days (0: all history)."""
        cs = self.p.amounts(event_type)[0]
        lo = self.end(event_type, back_days) if back_days else self.start(event_type)
        return (cs[self.end(event_type)] - cs[lo]) / AMOUNT_SCALE

    def days_since_last(self, event_type: str) -> np.ndarray:
        """Days from the last ``event_type`` event to the cutoff (NaN if none).

        Up to :data:`KEEP_ROWS` customers the array is kept for the cutoff and shared
        by its readers (read-only): rfm, rhythm, activity and engagement ask 14 times
        for 5 types, and at a few customers each computation's ~8 array operations
        cost more than its values. Above, each reader gets its own (a long build's
        peak memory holds no per-type arrays between families).
        """
        found = self._since.get(event_type)
        if found is not None:
            return found
        typed = self.p.typed(event_type)
        e, s = self.end(event_type), self.start(event_type)
        out = np.full(len(self.codes), np.nan)
        has = e > s
        out[has] = (self.cut_us - typed.t_at(e[has] - 1)) / DAY_US
        if len(self.codes) <= KEEP_ROWS:
            out.flags.writeable = False
            self._since[event_type] = out
        return out

    def tenure(self) -> np.ndarray:
        """Days from signup to the cutoff (kept for the cutoff)."""
        if self._tenure is None:
            self._tenure = (self.cut_us - self.p.signup_us[self.codes]) / DAY_US
        return self._tenure

    def purchase_day_counts(self) -> np.ndarray:
        """Distinct purchase days per customer before the cutoff (kept for the cutoff)."""
        if self._n_days is None:
            if len(self.p.typed("purchase")):
                row_cs = self.p.days().row_cs
                self._n_days = row_cs[self.end("purchase")] - row_cs[self.start("purchase")]
            else:
                self._n_days = np.zeros(len(self.codes), dtype=_I64)
        return self._n_days

    def forget_customer_arrays(self) -> None:
        """Drop the cached tenure and purchase-day counts (their readers are done)."""
        self._tenure = self._n_days = None

    def forget_ends(
        self, event_type: str, *, from_days: int = 0, to_days: int | None = None
    ) -> None:
        """Drop the cached bounds of ``event_type`` (their readers are done): those of
        windows ``from_days <= back_days < to_days`` (by default all of them)."""
        for key in [
            k
            for k in self._ends
            if k[0] == event_type and k[1] >= from_days and (to_days is None or k[1] < to_days)
        ]:
            del self._ends[key]
