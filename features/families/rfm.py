"""RFM family: recency, frequency (orders, purchase days) and monetary value."""

from __future__ import annotations

from typing import Any

import numpy as np

from features.families.base import Cutoff

__all__ = ["columns"]

_I64 = np.int64


def columns(cut: Cutoff) -> dict[str, Any]:
    """The rfm columns at ``cut``."""
    p = cut.p.typed("purchase")
    s, e = cut.start("purchase"), cut.end("purchase")
    orders_cs = cut.p.order_counts()
    orders = orders_cs[e] - orders_cs[s] if len(p) else np.zeros(len(s), dtype=_I64)
    n_days = cut.purchase_day_counts()
    total = cut.amount("purchase") - cut.amount("refund")
    mean = np.full(len(s), np.nan)
    np.divide(total, orders, out=mean, where=orders > 0)
    maximum = np.full(len(s), np.nan)
    has = e > s
    if has.any():
        idx = np.empty(2 * int(has.sum()), dtype=_I64)
        idx[0::2], idx[1::2] = s[has], e[has]
        maximum[has] = np.maximum.reduceat(cut.p.amounts("purchase")[1], idx)[0::2]
    return {
        "recency_days": cut.days_since_last("purchase"),
        "never_purchased": ~has,
        "frequency_orders": orders,
        "frequency_days": n_days,
        "monetary_total": total,
        "monetary_mean": mean,
        "monetary_max": maximum,
    }
