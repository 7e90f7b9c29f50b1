"""Event windows over raw events: :class:`EventIndex`.

The events before ``as_of`` are placed on the frame's rows (customer ids hashed in
Arrow) and split by event type once per evaluation, so each window is one mask and one
``bincount``. Events already coded by :func:`features.events.prepare_events` are read
by :class:`tags.rules.prepared.PreparedEventIndex` instead, which needs no hashing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.events import AMOUNT_SCALE
from tags.rules import ast
from tags.rules.windows import DAY_NS, NAT, arrow_strings, raw_times, window_bounds

__all__ = ["EventIndex"]


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
        raw, factor = raw_times(events["occurred_at"])
        keep = raw < -(-as_of_ns // factor)
        if needs is not None:
            earliest = min(needs.values())
            if earliest > NAT:
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
        mask = np.ones(len(ts), dtype=bool) if lo == NAT else ts >= lo
        if hi < self.as_of_ns:  # the index holds events before as_of only
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
            # Fixed-point sums (as feature building does): exact, so the same events give
            # the same total whatever their order or the path that summed them.
            cents = np.rint(picked["amount"] * AMOUNT_SCALE)
            return np.bincount(picked["pos"], weights=cents, minlength=n) / AMOUNT_SCALE
        out = np.full(n, np.nan)
        if picked is not None and len(picked["pos"]):
            latest = np.full(n, NAT, dtype=np.int64)
            np.maximum.at(latest, picked["pos"], picked["ts"])
            seen = latest > NAT
            out[seen] = (self.as_of_ns - latest[seen]) / DAY_NS
        return out
