"""Engagement family: activity against the customer's own long-run rates, decayed
counts, the purchase rate since buying began, and whether the last purchase went wrong."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from features.event_arrays import DAY_US
from features.families.base import Cutoff
from features.spec import FeatureSpec

__all__ = ["columns"]

_I64 = np.int64
# Events per block where a per-event temporary would otherwise span a whole type.
_BLOCK_EVENTS = 1 << 20


def _decayed(cut: Cutoff, event_types: Sequence[str], taus: Sequence[int]) -> list[np.ndarray]:
    """Per time constant, the sum of exp(-age / tau) over ``event_types`` events."""
    sums = [np.zeros(len(cut.codes)) for _ in taus]
    # Block buffers, reused: no allocation per block.
    micros, age, weight = np.empty(0, dtype=_I64), np.empty(0), np.empty(0)
    for etype in event_types:
        typed = cut.p.typed(etype)
        s, e = cut.start(etype), cut.end(etype)
        has = np.flatnonzero(e > s)
        if not len(has):
            continue
        # A customer's events before the cutoff are one range [s, e) of the sorted
        # events: sum each range with one reduceat, no per-event customer codes, in
        # blocks of customers so that the temporaries stay small.
        s_has, e_has = s[has], e[has]
        first = 0
        while first < len(has):
            lo = int(s_has[first])
            stop = max(int(np.searchsorted(e_has, lo + _BLOCK_EVENTS, side="right")), first + 1)
            hi = int(e_has[stop - 1])
            m = hi - lo
            if m + 1 > len(age):  # + a sentinel: reduceat bounds may equal hi
                micros, age, weight = np.empty(m, _I64), np.empty(m + 1), np.empty(m + 1)
            a, w = age[: m + 1], weight[: m + 1]
            typed.micros_until(cut.cut_us, lo, hi, micros[:m])
            np.divide(micros[:m], DAY_US, out=a[:-1])
            np.maximum(a, 0.0, out=a)  # later events are outside every range
            a[-1] = 0.0
            bounds = np.empty(2 * (stop - first), dtype=_I64)
            bounds[0::2], bounds[1::2] = s_has[first:stop] - lo, e_has[first:stop] - lo
            for out, tau in zip(sums, taus, strict=True):
                np.divide(a, -tau, out=w)
                np.exp(w, out=w)
                out[has[first:stop]] += np.add.reduceat(w, bounds)[0::2]
            first = stop
    return sums


def columns(cut: Cutoff, spec: FeatureSpec) -> Iterator[dict[str, Any]]:
    """The engagement columns, a few at a time."""
    g = spec.engagement
    n = len(cut.codes)
    exposure = np.maximum(cut.tenure(), 1.0)
    rate_sum = np.zeros(n)
    for etype in g.event_types:
        rate = cut.count(etype) / exposure
        rate_sum += rate
        recency = cut.days_since_last(etype)
        ratio = np.full(n, np.nan)
        np.divide(cut.count(etype, g.recent_days), rate * g.recent_days, out=ratio, where=rate > 0)
        cut.forget_ends(etype, from_days=g.recent_days, to_days=g.recent_days + 1)
        yield {
            f"{etype}_recency_days": recency,
            f"{etype}_per_day": rate,
            f"{etype}_silence": recency * rate,
            f"{etype}_recent_ratio": ratio,
        }
        del rate, recency, ratio
    engaged = _decayed(cut, g.event_types, g.decay_days)
    bought = _decayed(cut, ["purchase"], g.decay_days)
    for tau, decayed, purchases in zip(g.decay_days, engaged, bought, strict=True):
        ratio = np.full(n, np.nan)
        np.divide(decayed, rate_sum * tau, out=ratio, where=rate_sum > 0)
        yield {
            f"engagement_decayed_{tau}d": decayed,
            f"engagement_decayed_{tau}d_ratio": ratio,
            f"purchase_decayed_{tau}d": purchases,
        }
    del engaged, bought, rate_sum
    cols: dict[str, Any] = {}
    p = cut.p.typed("purchase")
    s, e = cut.start("purchase"), cut.end("purchase")
    has = e > s
    per_day = np.full(n, np.nan)
    if has.any():
        orders_cs = cut.p.order_counts()
        since_first = (cut.cut_us - p.t_at(s[has])) / DAY_US
        per_day[has] = (orders_cs[e[has]] - orders_cs[s[has]]) / np.maximum(since_first, 1.0)
    recency = cut.days_since_last("purchase")
    cols["purchase_per_day"] = per_day
    cols["purchase_silence"] = recency * per_day
    for etype, name in (("complaint", "complained"), ("refund", "refunded")):
        since = cut.days_since_last(etype)
        cols[f"{name}_since_last_purchase"] = has & (since <= recency)
    yield cols
