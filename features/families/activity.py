"""Activity family: tenure, last activity, conversion and refund/complaint counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from features.families.base import Cutoff

__all__ = ["columns"]

_I64 = np.int64


def columns(cut: Cutoff) -> dict[str, Any]:
    """The activity columns at ``cut``."""
    n = len(cut.codes)
    last = np.full(n, np.nan)
    for etype in cut.p.event_types:
        since = cut.days_since_last(etype)
        last = np.fmin(last, since)
    orders_cs = cut.p.order_counts()
    if len(cut.p.typed("purchase")):
        orders = orders_cs[cut.end("purchase")] - orders_cs[cut.start("purchase")]
    else:
        orders = np.zeros(n, dtype=_I64)
    browses = cut.count("browse")
    b2p = np.full(n, np.nan)
    np.divide(orders, browses, out=b2p, where=browses > 0)
    refund_rate = np.full(n, np.nan)
    np.divide(cut.count("refund"), orders, out=refund_rate, where=orders > 0)
    return {
        "tenure_days": cut.tenure(),
        "days_since_last_activity": last,
        "browse_to_purchase": b2p,
        "refund_rate": refund_rate,
        "refund_count": cut.count("refund"),
        "complaint_count": cut.count("complaint"),
        "days_since_last_complaint": cut.days_since_last("complaint"),
    }
