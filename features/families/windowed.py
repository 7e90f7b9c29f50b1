"""Windowed and trend families: counts and amount sums per event type over the
last ``w`` days, and how the last window compares with the one before it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from features.families.base import Cutoff
from features.spec import FeatureSpec

__all__ = ["columns"]


def columns(cut: Cutoff, spec: FeatureSpec, etype: str) -> Iterator[dict[str, Any]]:
    """Windowed and trend columns of ``etype``, one window at a time."""
    amount_types = set(spec.amount_event_types)
    for w in spec.windows:
        cols: dict[str, Any] = {}
        last = cut.count(etype, w)
        if spec.has("windowed"):
            cols[f"{etype}_count_{w}d"] = last
            if etype in amount_types:
                cols[f"{etype}_amount_{w}d"] = cut.amount(etype, w)
        if spec.has("trend"):
            prev = cut.end(etype, w) - cut.end(etype, 2 * w)
            both = last + prev
            prev -= last  # previous - last
            np.negative(prev, out=prev)
            # Divided in float64, stored at the catalogue's float32: no wide copy.
            trend = np.zeros(len(last), dtype=np.float32)
            np.divide(prev, both, out=trend, where=both > 0)
            cols[f"{etype}_count_trend_{w}d"] = trend
            del prev, both
        del last
        # A window's bounds serve only its own columns and the next trend.
        cut.forget_ends(etype, from_days=1, to_days=w)
        yield cols
    cut.forget_ends(etype, from_days=1)
