"""Preference family: the top category of one event type, its share, and how spread
the customer's categories are."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from features.event_arrays import REL_MAX, prefix_sum
from features.families.base import Cutoff

__all__ = ["columns"]

_I64 = np.int64


def columns(cut: Cutoff, event_type: str) -> dict[str, Any]:
    """The preference columns at ``cut``, over the categories of ``event_type`` events."""
    g = cut.p.groups(event_type)
    size = cut.p.n_customers
    seen = prefix_sum(g.seconds < min(max(cut.rel, 0), REL_MAX), cut.p.index_dtype)
    cnt = seen[g.bounds[1:]] - seen[g.bounds[:-1]]
    total = np.bincount(g.code, weights=cnt, minlength=size)
    distinct = np.bincount(g.code, weights=cnt > 0, minlength=size)
    share_in = np.zeros(len(cnt))
    np.divide(cnt, total[g.code], out=share_in, where=cnt > 0)
    h = np.zeros(len(cnt))
    pos = cnt > 0
    h[pos] = -share_in[pos] * np.log2(share_in[pos])
    entropy = np.bincount(g.code, weights=h, minlength=size)
    top_count = np.zeros(size, dtype=_I64)
    top_cat = np.full(size, -1, dtype=_I64)
    if len(cnt):
        top_count[g.code[g.run_starts]] = np.maximum.reduceat(cnt, g.run_starts)
        cand = np.flatnonzero((cnt == top_count[g.code]) & pos)
        first = np.ones(len(cand), dtype=bool)
        first[1:] = g.code[cand][1:] != g.code[cand][:-1]
        top_cat[g.code[cand[first]]] = g.cat[cand[first]]
    total_c = total[cut.codes]
    has = total_c > 0
    top = pa.array(g.labels, type=pa.large_string()).take(pa.array(top_cat[cut.codes], mask=~has))
    share = np.full(len(cut.codes), np.nan)
    share[has] = top_count[cut.codes][has] / total_c[has]
    ent = np.where(has, entropy[cut.codes], np.nan)
    return {
        "top_category": top,
        "top_category_share": share,
        "distinct_categories": distinct[cut.codes].astype(_I64),
        "category_entropy": ent + 0.0,
    }
