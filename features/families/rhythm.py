"""Rhythm family: gaps between purchase days, lateness against the customer's own
rhythm, active weeks and loyalty over periods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from features.event_arrays import DAY_US, PurchaseDays
from features.families.base import Cutoff
from features.spec import FeatureSpec

__all__ = ["columns"]

_I64 = np.int64


def _day_rows_in_prefix(cut: Cutoff) -> tuple[PurchaseDays, np.ndarray, np.ndarray, np.ndarray]:
    """Purchase-day rows before the cutoff: (days, mask, first row, row count)."""
    days = cut.p.days()
    if not len(cut.p.typed("purchase")):
        zeros = np.zeros(len(cut.codes), dtype=_I64)
        return days, np.zeros(0, dtype=bool), zeros, zeros
    ds = days.row_cs[cut.start("purchase")]
    end_by_code = days.row_cs[cut.p.typed("purchase").starts[:-1]]
    end_by_code[cut.codes] = ds + cut.purchase_day_counts()
    mask = np.arange(len(days.code), dtype=days.row_cs.dtype) < end_by_code[days.code]
    return days, mask, ds, cut.purchase_day_counts()


def columns(cut: Cutoff, spec: FeatureSpec) -> Iterator[dict[str, Any]]:
    """The rhythm columns in three groups (their temporaries span purchase days)."""
    r = spec.rhythm
    n = len(cut.codes)
    days, mask, ds, nd = _day_rows_in_prefix(cut)
    gap_mean = np.full(n, np.nan)
    gap_median = np.full(n, np.nan)
    gap_std = np.full(n, np.nan)
    multi = nd >= 2
    if multi.any():
        first_day = days.day[ds[multi]]
        last_day = days.day[ds[multi] + nd[multi] - 1]
        n_gaps = nd[multi] - 1
        mean = (last_day - first_day) / n_gaps
        sq = days.gap_sq_cs[ds[multi] + nd[multi]] - days.gap_sq_cs[ds[multi]]
        gap_mean[multi] = mean
        gap_std[multi] = np.sqrt(np.maximum(sq / n_gaps - mean * mean, 0.0))
        with_gap = mask & (days.gap > 0)  # all but each customer's first day
        packed = (days.code[with_gap].astype(_I64) << 24) | np.minimum(
            days.gap[with_gap], 2**24 - 1
        )
        del with_gap
        packed.sort()
        packed &= 2**24 - 1  # the gaps, per customer in ascending order
        offsets = np.concatenate([[0], np.cumsum(n_gaps)[:-1]])
        gap_median[multi] = (
            packed[offsets + (n_gaps - 1) // 2] + packed[offsets + n_gaps // 2]
        ) / 2.0
        del packed
    recency = cut.days_since_last("purchase")
    lateness = np.full(n, np.nan)
    np.divide(recency, gap_mean, out=lateness, where=multi & (gap_mean > 0))
    lateness[multi & (gap_mean == 0)] = np.nan
    yield {
        "gap_mean_days": gap_mean,
        "gap_median_days": gap_median,
        "gap_std_days": gap_std,
        "lateness": lateness,
    }
    del gap_mean, gap_median, gap_std, lateness, recency

    tenure = cut.tenure()
    last_day_no = -(-cut.cut_us // DAY_US) - 1  # the last UTC day before the cutoff
    age = last_day_no - days.day
    weeks_avail = np.clip(np.ceil(tenure / 7), 1, r.active_weeks)
    week = age // 7
    in_weeks = mask & (week < r.active_weeks)
    new_week = np.ones(len(week), dtype=bool)
    new_week[1:] = (week[1:] != week[:-1]) | (days.code[1:] != days.code[:-1])
    new_week &= in_weeks
    del week, in_weeks
    active = np.bincount(days.code[new_week], minlength=cut.p.n_customers)
    del new_week
    yield {"active_week_share": np.minimum(active[cut.codes] / weeks_avail, 1.0)}
    del active

    # Loyalty: x = purchase days per period over the customer's n_eff periods. The
    # periods with x > 0 are runs of equal (customer, period) among the day rows,
    # so sums of x and x**2 per customer need no customers x periods matrix.
    per_days = r.loyalty_period_days
    n_eff = np.clip(np.ceil(tenure / per_days), 1, r.loyalty_periods)
    n_eff_by_code = np.zeros(cut.p.n_customers, dtype=np.int32)
    n_eff_by_code[cut.codes] = n_eff
    period = age // per_days
    del age
    sel = np.flatnonzero(mask & (period < n_eff_by_code[days.code]))
    del n_eff_by_code, mask
    c, per = days.code[sel], period[sel]
    del sel, period
    new_run = np.ones(len(c), dtype=bool)
    new_run[1:] = (c[1:] != c[:-1]) | (per[1:] != per[:-1])
    heads = np.flatnonzero(new_run)
    x = np.diff(np.append(heads, len(c))).astype(np.float64)
    run_code = c[heads]
    del c, per, new_run, heads
    size = cut.p.n_customers
    s1 = np.bincount(run_code, weights=x, minlength=size)[cut.codes]
    s2 = np.bincount(run_code, weights=x * x, minlength=size)[cut.codes]
    share = np.bincount(run_code, minlength=size)[cut.codes] / n_eff
    # Population variance over n_eff periods, from integer sums (exact).
    x_mean = s1 / n_eff
    x_std = np.sqrt(np.maximum(n_eff * s2 - s1 * s1, 0.0)) / n_eff
    loyalty = np.zeros(n)
    pos = x_mean > 0
    loyalty[pos] = share[pos] / (1.0 + x_std[pos] / x_mean[pos])
    yield {"loyalty_score": loyalty}
