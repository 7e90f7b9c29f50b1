"""A naive, per-customer Python loop computing every feature straight from the catalogue.

It is the oracle of ``test_matches_naive_loop``: slow, obvious, and sharing no code with
the feature engine beyond the spec and the catalogue (names, dtypes, age-band labels).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from features.catalog import age_band_labels, feature_catalog
from features.spec import FeatureSpec

DAY_US = 86_400_000_000


def _us(ts: Any) -> int:
    return int(pd.Timestamp(ts).value // 1000)


def naive_features(
    customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, spec: FeatureSpec
) -> pd.DataFrame:
    cut = _us(as_of)
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in events.to_dict("records"):
        if _us(rec["occurred_at"]) < cut:
            by_customer[rec["customer_id"]].append(rec)
    rows = []
    for cust in sorted(customers.to_dict("records"), key=lambda c: c["customer_id"]):
        if not _us(cust["signup_at"]) < cut:
            continue
        evs = by_customer.get(cust["customer_id"], [])
        rows.append(_one(cust, evs, cut, as_of, spec))
    names = ["customer_id"] + [f.name for f in feature_catalog(spec)]
    frame = pd.DataFrame(rows, columns=names)
    frame["customer_id"] = frame["customer_id"].astype("string")
    for info in feature_catalog(spec):
        if info.dtype == "category":
            # Declared categories: the bands in age order, an attribute's distinct values.
            if info.name == "age_band":
                levels = age_band_labels(spec.attributes.age_bands)
            else:
                levels = sorted({str(v) for v in customers[info.name] if not _missing(v)})
            dtype = pd.CategoricalDtype(pd.Index(levels, dtype="str"))
            frame[info.name] = frame[info.name].astype("string").astype(dtype)
        else:
            frame[info.name] = frame[info.name].astype(info.dtype)  # type: ignore[call-overload]
    return frame


def _amount(e: dict[str, Any]) -> float:
    a = e["amount"]
    return 0.0 if a is None or (isinstance(a, float) and math.isnan(a)) else float(a)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _one(
    cust: dict[str, Any],
    evs: list[dict[str, Any]],
    cut: int,
    as_of: pd.Timestamp,
    spec: FeatureSpec,
) -> dict[str, Any]:
    nan = float("nan")
    out: dict[str, Any] = {"customer_id": cust["customer_id"]}
    of = lambda t: [e for e in evs if e["event_type"] == t]  # noqa: E731
    purchases = of("purchase")
    refunds = of("refund")
    p_times = sorted(_us(e["occurred_at"]) for e in purchases)
    order_ids = {e["order_id"] for e in purchases if not _missing(e["order_id"])}
    orders = len(order_ids) + sum(1 for e in purchases if _missing(e["order_id"]))
    p_days = sorted({t // DAY_US for t in p_times})
    recency = (cut - p_times[-1]) / DAY_US if p_times else nan
    total = sum(_amount(e) for e in purchases) - sum(_amount(e) for e in refunds)
    if spec.has("rfm"):
        out["recency_days"] = recency
        out["never_purchased"] = not p_times
        out["frequency_orders"] = orders
        out["frequency_days"] = len(p_days)
        out["monetary_total"] = total
        out["monetary_mean"] = total / orders if orders else nan
        out["monetary_max"] = max(_amount(e) for e in purchases) if purchases else nan

    def count(etype: str, lo_days: int, hi_days: int) -> int:
        lo, hi = cut - hi_days * DAY_US, cut - lo_days * DAY_US
        return sum(1 for e in of(etype) if lo <= _us(e["occurred_at"]) < hi)

    for etype in spec.event_types:
        for w in spec.windows:
            if spec.has("windowed"):
                out[f"{etype}_count_{w}d"] = count(etype, 0, w)
                if etype in spec.amount_event_types:
                    lo = cut - w * DAY_US
                    out[f"{etype}_amount_{w}d"] = sum(
                        _amount(e) for e in of(etype) if _us(e["occurred_at"]) >= lo
                    )
            if spec.has("trend"):
                last, prev = count(etype, 0, w), count(etype, w, 2 * w)
                out[f"{etype}_count_trend_{w}d"] = (
                    (last - prev) / (last + prev) if last + prev else 0.0
                )
    tenure = (cut - _us(cust["signup_at"])) / DAY_US
    if spec.has("rhythm"):
        r = spec.rhythm
        gaps = [b - a for a, b in itertools.pairwise(p_days)]
        mean = statistics.fmean(gaps) if gaps else nan
        out["gap_mean_days"] = mean
        out["gap_median_days"] = statistics.median(gaps) if gaps else nan
        out["gap_std_days"] = statistics.pstdev(gaps) if gaps else nan
        out["lateness"] = recency / mean if gaps else nan
        last_day = -(-cut // DAY_US) - 1
        weeks = {(last_day - d) // 7 for d in p_days if (last_day - d) // 7 < r.active_weeks}
        avail = min(max(math.ceil(tenure / 7), 1), r.active_weeks)
        out["active_week_share"] = min(len(weeks) / avail, 1.0)
        n_eff = min(max(math.ceil(tenure / r.loyalty_period_days), 1), r.loyalty_periods)
        x = [0] * n_eff
        for d in p_days:
            k = (last_day - d) // r.loyalty_period_days
            if k < n_eff:
                x[k] += 1
        m = sum(x) / n_eff
        out["loyalty_score"] = (
            (sum(1 for v in x if v > 0) / n_eff) / (1 + statistics.pstdev(x) / m) if m else 0.0
        )
    if spec.has("activity"):
        times = [_us(e["occurred_at"]) for e in evs]
        browses = len(of("browse"))
        complaints = sorted(_us(e["occurred_at"]) for e in of("complaint"))
        out["tenure_days"] = tenure
        out["days_since_last_activity"] = (cut - max(times)) / DAY_US if times else nan
        out["browse_to_purchase"] = orders / browses if browses else nan
        out["refund_rate"] = len(refunds) / orders if orders else nan
        out["refund_count"] = len(refunds)
        out["complaint_count"] = len(complaints)
        out["days_since_last_complaint"] = (cut - complaints[-1]) / DAY_US if complaints else nan
    if spec.has("preference"):
        cats = Counter(
            e["category"] for e in of(spec.preference.event_type) if not _missing(e["category"])
        )
        n = sum(cats.values())
        if n:
            best = max(cats.values())
            top = min(c for c, v in cats.items() if v == best)
            out["top_category"] = top
            out["top_category_share"] = best / n
            out["category_entropy"] = -sum(v / n * math.log2(v / n) for v in cats.values())
        else:
            out["top_category"] = None
            out["top_category_share"] = nan
            out["category_entropy"] = nan
        out["distinct_categories"] = len(cats)
    if spec.has("attributes"):
        a = spec.attributes
        if a.birth_year_column:
            birth = cust.get(a.birth_year_column)
            if _missing(birth):
                out["age"], out["age_band"] = nan, None
            else:
                age = as_of.year - int(birth)
                labels = age_band_labels(a.age_bands)
                out["age"] = float(age)
                out["age_band"] = labels[sum(1 for edge in a.age_bands if age >= edge)]
        for column in a.columns:
            v = cust.get(column)
            out[column] = None if _missing(v) else str(v)
    if spec.has("engagement"):
        g = spec.engagement
        exposure = max(tenure, 1.0)
        ages = {
            t: [(cut - _us(e["occurred_at"])) / DAY_US for e in of(t)]
            for t in {e["event_type"] for e in evs}
        }
        rate_sum = 0.0
        for etype in g.event_types:
            seen = ages.get(etype, [])
            rate = len(seen) / exposure
            rate_sum += rate
            last = min(seen) if seen else nan
            out[f"{etype}_recency_days"] = last
            out[f"{etype}_per_day"] = rate
            out[f"{etype}_silence"] = last * rate
            recent = sum(1 for a in seen if a <= g.recent_days)
            out[f"{etype}_recent_ratio"] = recent / (rate * g.recent_days) if rate > 0 else nan
        for tau in g.decay_days:
            decayed = sum(math.exp(-a / tau) for t in g.event_types for a in ages.get(t, []))
            out[f"engagement_decayed_{tau}d"] = decayed
            out[f"engagement_decayed_{tau}d_ratio"] = (
                decayed / (rate_sum * tau) if rate_sum > 0 else nan
            )
            out[f"purchase_decayed_{tau}d"] = sum(
                math.exp(-a / tau) for a in ages.get("purchase", [])
            )
        per_day = orders / max((cut - p_times[0]) / DAY_US, 1.0) if p_times else nan
        out["purchase_per_day"] = per_day
        out["purchase_silence"] = recency * per_day
        for etype, name in (("complaint", "complained"), ("refund", "refunded")):
            after = [e for e in of(etype) if p_times and _us(e["occurred_at"]) >= p_times[-1]]
            out[f"{name}_since_last_purchase"] = bool(after)
    return out
