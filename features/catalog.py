"""The feature catalogue: every feature a spec yields, with its exact definition.

Each family's entries are data (name, dtype, unit, description) written once here,
engine-independent: the numpy engine (:mod:`features.families`) computes them, and the
same definitions could be compiled to SQL or Spark. See :mod:`features.spec` for the
dtype policy and the missing-value rules the descriptions follow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from features.spec import FAMILIES, FeatureSpec, default_spec

__all__ = ["FeatureInfo", "age_band_labels", "feature_catalog"]

# name, dtype, unit, description
_Entry = tuple[str, str, str, str]


@dataclass(frozen=True)
class FeatureInfo:
    """One feature of the catalogue.

    Attributes:
        name: Column name in feature frames.
        family: Family it belongs to.
        dtype: pandas dtype of the column: ``int32`` (counts), ``float64`` (money),
            ``float32`` (other continuous values), ``bool``, ``category`` or
            ``string``; floating columns use NaN for null, the others ``<NA>``/NaN.
        unit: Unit of the value (``days``, ``events``, ``currency``, ``ratio``, ...).
        description: Exact definition, including when the value is null.
    """

    name: str
    family: str
    dtype: str
    unit: str
    description: str


def age_band_labels(edges: list[int]) -> list[str]:
    """Labels of the age bands for ``edges`` (e.g. ``<18``, ``18-25``, ..., ``66+``)."""
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    return labels


def feature_catalog(spec: FeatureSpec | None = None) -> list[FeatureInfo]:
    """Every feature ``spec`` yields, in output column order, with its definition.

    All features are computed as of a cutoff ``as_of`` from events with
    ``occurred_at < as_of``; "days" are fractional (seconds / 86400) unless stated.
    Families come in the order of :data:`features.spec.FAMILIES`.
    """
    spec = spec or default_spec()
    return [
        FeatureInfo(name, family, dtype, unit, description)
        for family in FAMILIES
        if spec.has(family)
        for name, dtype, unit, description in _CATALOGUES[family](spec)
    ]


_RFM: list[_Entry] = [
    (
        "recency_days",
        "float32",
        "days",
        "Days from the last purchase to as_of. Null if the customer never purchased.",
    ),
    (
        "never_purchased",
        "bool",
        "flag",
        "True if the customer has no purchase before as_of (why recency is null).",
    ),
    (
        "frequency_orders",
        "int32",
        "orders",
        "Distinct orders among purchases (a purchase without order_id is its own order).",
    ),
    (
        "frequency_days",
        "int32",
        "days",
        "Distinct UTC calendar days with at least one purchase.",
    ),
    (
        "monetary_total",
        "float64",
        "currency",
        "Purchase amounts minus refund amounts, all history (net of refunds); "
        "0 if none. Amounts are summed exactly at 0.0001 currency units.",
    ),
    (
        "monetary_mean",
        "float64",
        "currency",
        "monetary_total / frequency_orders (net spend per order). Null if no orders.",
    ),
    (
        "monetary_max",
        "float64",
        "currency",
        "Largest single purchase event amount (gross). Null if never purchased.",
    ),
]

_ACTIVITY: list[_Entry] = [
    ("tenure_days", "float32", "days", "Days from signup_at to as_of."),
    (
        "days_since_last_activity",
        "float32",
        "days",
        "Days from the last event of any type to as_of. Null if no events.",
    ),
    (
        "browse_to_purchase",
        "float32",
        "ratio",
        "frequency_orders / number of browse events, all history. Null if no browse.",
    ),
    (
        "refund_rate",
        "float32",
        "ratio",
        "Refund events / frequency_orders, all history. Null if no orders.",
    ),
    ("refund_count", "int32", "events", "Refund events, all history."),
    ("complaint_count", "int32", "events", "Complaint events, all history."),
    (
        "days_since_last_complaint",
        "float32",
        "days",
        "Days from the last complaint to as_of. Null if none.",
    ),
]


def _windowed(spec: FeatureSpec) -> list[_Entry]:
    amount_types = set(spec.amount_event_types)
    out: list[_Entry] = []
    for etype in spec.event_types:
        for w in spec.windows:
            out.append(
                (
                    f"{etype}_count_{w}d",
                    "int32",
                    "events",
                    f"Number of {etype} events in [as_of - {w} days, as_of).",
                )
            )
            if etype in amount_types:
                out.append(
                    (
                        f"{etype}_amount_{w}d",
                        "float64",
                        "currency",
                        f"Sum of {etype} amounts in [as_of - {w} days, as_of); 0 if none.",
                    )
                )
    return out


def _trend(spec: FeatureSpec) -> list[_Entry]:
    return [
        (
            f"{etype}_count_trend_{w}d",
            "float32",
            "ratio",
            f"(last - previous) / (last + previous) of {etype} counts, last = "
            f"[as_of - {w}d, as_of), previous = [as_of - {2 * w}d, as_of - {w}d); "
            "in [-1, 1], 0 when both windows are empty.",
        )
        for etype in spec.event_types
        for w in spec.windows
    ]


def _rhythm(spec: FeatureSpec) -> list[_Entry]:
    r = spec.rhythm
    return [
        (
            "gap_mean_days",
            "float32",
            "days",
            "Mean gap in whole days between consecutive distinct purchase days. "
            "Null with fewer than 2 purchase days.",
        ),
        (
            "gap_median_days",
            "float32",
            "days",
            "Median of those gaps. Null with fewer than 2 purchase days.",
        ),
        (
            "gap_std_days",
            "float32",
            "days",
            "Population standard deviation of those gaps. Null with fewer than 2 purchase days.",
        ),
        (
            "lateness",
            "float32",
            "ratio",
            "recency_days / gap_mean_days: above 1 means later than the customer's usual "
            "rhythm. Null when either is null.",
        ),
        (
            "active_week_share",
            "float32",
            "ratio",
            f"Share of the last {r.active_weeks} weeks (7-day blocks of UTC days counted "
            "back from as_of, at most as many as the tenure covers) with a purchase.",
        ),
        (
            "loyalty_score",
            "float32",
            "score",
            f"Regularity over the last {r.loyalty_periods} periods of "
            f"{r.loyalty_period_days} days (as many as the tenure covers, at least 1): "
            "with x = purchase days per period, (share of periods with x > 0) / "
            "(1 + std(x) / mean(x)); in [0, 1], 0 without purchases in those periods.",
        ),
    ]


def _preference(spec: FeatureSpec) -> list[_Entry]:
    et = spec.preference.event_type
    return [
        (
            "top_category",
            "string",
            "category",
            f"Most frequent category among {et} events with a category (ties: "
            "alphabetically first). Null if none.",
        ),
        (
            "top_category_share",
            "float32",
            "ratio",
            f"Share of those {et} events in the top category. Null if none.",
        ),
        (
            "distinct_categories",
            "int32",
            "categories",
            f"Number of distinct categories among {et} events.",
        ),
        (
            "category_entropy",
            "float32",
            "bits",
            f"Shannon entropy (base 2) of the category distribution of {et} events. Null if none.",
        ),
    ]


def _attributes(spec: FeatureSpec) -> list[_Entry]:
    a = spec.attributes
    out: list[_Entry] = []
    if a.birth_year_column:
        out.append(
            (
                "age",
                "float32",
                "years",
                f"Calendar year of as_of minus {a.birth_year_column}. Null if unknown.",
            )
        )
        out.append(
            (
                "age_band",
                "category",
                "band",
                "Age band, one of "
                + ", ".join(age_band_labels(a.age_bands))
                + " (the categories, in this order). Null if age is unknown.",
            )
        )
    for column in a.columns:
        out.append(
            (
                column,
                "category",
                "category",
                f"The customer's '{column}' attribute fact; its categories are the "
                "distinct values of that column in the customers table, sorted. "
                "Null if missing.",
            )
        )
    return out


def _engagement_per_type(etype: str, recent_days: int) -> list[_Entry]:
    tenure = "max(tenure_days, 1)"
    return [
        (
            f"{etype}_recency_days",
            "float32",
            "days",
            f"Days from the last {etype} event to as_of. Null if none.",
        ),
        (
            f"{etype}_per_day",
            "float32",
            "events/day",
            f"{etype} events, all history, per day of tenure: count / {tenure}.",
        ),
        (
            f"{etype}_silence",
            "float32",
            "events",
            f"{etype}_recency_days * {etype}_per_day: how many {etype} events the customer's "
            "own long-run rate would have produced since the last one. Null if none.",
        ),
        (
            f"{etype}_recent_ratio",
            "float32",
            "ratio",
            f"{etype} events in [as_of - {recent_days}d, as_of) / ({etype}_per_day * "
            f"{recent_days}): recent activity against the usual rate (1 = as usual, "
            f"0 = silent). Null if {etype}_per_day is 0.",
        ),
    ]


def _engagement_decayed(tau: int, types: str) -> list[_Entry]:
    return [
        (
            f"engagement_decayed_{tau}d",
            "float32",
            "events",
            f"Sum over {types} events of exp(-age / {tau}), age = days from the event to "
            "as_of: a count that forgets with a time constant of "
            f"{tau} days; 0 if none.",
        ),
        (
            f"engagement_decayed_{tau}d_ratio",
            "float32",
            "ratio",
            f"engagement_decayed_{tau}d / ({tau} * the sum of the {{type}}_per_day rates of "
            f"{types}): about 1 for a customer as active as usual lately. Null if those "
            "rates sum to 0.",
        ),
        (
            f"purchase_decayed_{tau}d",
            "float32",
            "events",
            f"Sum over purchase events of exp(-age / {tau}), age in days to as_of; 0 if none.",
        ),
    ]


_ENGAGEMENT_PURCHASE: list[_Entry] = [
    (
        "purchase_per_day",
        "float32",
        "orders/day",
        "frequency_orders / max(days from the first purchase to as_of, 1): the purchase "
        "rate since buying began. Null if never purchased.",
    ),
    (
        "purchase_silence",
        "float32",
        "orders",
        "recency_days * purchase_per_day: orders the customer's own rate would have "
        "produced since the last purchase. Null if never purchased.",
    ),
    (
        "complained_since_last_purchase",
        "bool",
        "flag",
        "True if a complaint happened at or after the last purchase (before as_of). "
        "False if never purchased.",
    ),
    (
        "refunded_since_last_purchase",
        "bool",
        "flag",
        "True if a refund happened at or after the last purchase (before as_of). "
        "False if never purchased.",
    ),
]


def _engagement(spec: FeatureSpec) -> list[_Entry]:
    g = spec.engagement
    types = ", ".join(g.event_types)
    out = [e for etype in g.event_types for e in _engagement_per_type(etype, g.recent_days)]
    out += [e for tau in g.decay_days for e in _engagement_decayed(tau, types)]
    return out + _ENGAGEMENT_PURCHASE


_CATALOGUES: dict[str, Callable[[FeatureSpec], list[_Entry]]] = {
    "rfm": lambda spec: _RFM,
    "windowed": _windowed,
    "trend": _trend,
    "rhythm": _rhythm,
    "activity": lambda spec: _ACTIVITY,
    "preference": _preference,
    "attributes": _attributes,
    "engagement": _engagement,
}
