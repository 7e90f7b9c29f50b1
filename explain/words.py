"""Features in plain words, from the feature catalogue: "no purchase for 143 days".

:class:`FeatureWords` phrases a feature's value for a reader who does not know the
column names: a phrase for the features people ask about most (recency, rhythm,
frequency, spend, windows), and the catalogue's unit for every other one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from features.catalog import FeatureInfo

__all__ = ["FeatureWords", "amount"]


def amount(value: float) -> str:
    """A number for prose: whole numbers plain, others with up to 2 decimals."""
    if abs(value - round(value)) < 1e-9 and abs(value) < 1e15:
        return f"{round(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


Phrase = Callable[[Any, Mapping[str, Any]], str]

_FIXED: dict[str, Phrase] = {
    "recency_days": lambda v, row: (
        "never purchased"
        if v is None
        else f"no purchase for {amount(v)} days"
        + (
            f", usual gap {amount(row['gap_mean_days'])} days"
            if row.get("gap_mean_days") is not None
            else ""
        )
    ),
    "never_purchased": lambda v, _: "never purchased" if v else "has purchased",
    "frequency_orders": lambda v, _: f"{amount(v)} orders in all",
    "frequency_days": lambda v, _: f"bought on {amount(v)} different days",
    "monetary_total": lambda v, _: f"net spend {amount(v)} in all",
    "monetary_mean": lambda v, _: f"spends {amount(v)} per order",
    "monetary_max": lambda v, _: f"largest purchase {amount(v)}",
    "tenure_days": lambda v, _: f"customer for {amount(v)} days",
    "days_since_last_activity": lambda v, _: f"last activity {amount(v)} days ago",
    "gap_mean_days": lambda v, _: f"usual gap between purchases {amount(v)} days",
    "gap_median_days": lambda v, _: f"median gap between purchases {amount(v)} days",
    "lateness": lambda v, _: f"{amount(v)} times later than the usual gap",
    "refund_rate": lambda v, _: f"refund rate {_pct(v)}",
    "refund_count": lambda v, _: f"{amount(v)} refunds in all",
    "complaint_count": lambda v, _: f"{amount(v)} complaints in all",
    "loyalty_score": lambda v, _: f"loyalty score {amount(v)}",
    "active_week_share": lambda v, _: f"bought in {_pct(v)} of recent weeks",
    "top_category": lambda v, _: f"buys mostly {v}",
    "age": lambda v, _: f"aged {amount(v)}",
}
_WINDOW = re.compile(r"^(?P<etype>[a-z_]+?)_(?P<what>count|amount)_(?P<days>\d+)d$")
_TREND = re.compile(r"^(?P<etype>[a-z_]+?)_count_trend_(?P<days>\d+)d$")


class FeatureWords:
    """Plain words for the features of one catalogue (``features.catalog.feature_catalog``)."""

    def __init__(self, catalog: Iterable[FeatureInfo]) -> None:
        self.info = {f.name: f for f in catalog}

    def label(self, name: str) -> str:
        """The feature's name in words (``recency days``)."""
        return name.replace("_", " ")

    def describe(self, name: str, value: Any, row: Mapping[str, Any] | None = None) -> str:
        """``value`` of feature ``name`` in words; ``row`` gives context features."""
        context = row or {}
        if isinstance(value, float) and math.isnan(value):
            value = None
        fixed = _FIXED.get(name)
        if fixed is not None and (value is not None or name == "recency_days"):
            return fixed(value, context)
        if value is None:
            return f"no {self.label(name)}"
        window = _WINDOW.match(name)
        if window and isinstance(value, (int, float)):
            etype, days = window["etype"], window["days"]
            if window["what"] == "count":
                return f"{amount(value)} {etype} events in the last {days} days"
            return f"{etype} amount {amount(value)} in the last {days} days"
        trend = _TREND.match(name)
        if trend and isinstance(value, (int, float)):
            direction = "rising" if value > 0 else "falling" if value < 0 else "flat"
            return f"{trend['etype']} {direction} over the last {trend['days']} days ({value:+.2f})"
        info = self.info.get(name)
        unit = info.unit if info is not None else ""
        shown = (
            amount(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else str(value)
        )
        if unit in ("", "flag", "category", "band", "score", "ratio"):
            return f"{self.label(name)} {shown}"
        return f"{self.label(name)} {shown} {unit}"
