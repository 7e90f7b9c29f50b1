"""Hand-made feature frames with the fixed core feature names (TEAM contract)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.schema import events_frame
from tags.catalogue import LIBRARY_DIR, Catalogue

EVENT_TYPES = ["purchase", "refund", "browse", "login", "complaint"]

# A customer who bought a few times, recently, moderately: every other row overrides.
_DEFAULTS: dict[str, Any] = {
    "recency_days": 10.0,
    "never_purchased": False,
    "frequency_orders": 2.0,
    "frequency_days": 2.0,
    "monetary_total": 100.0,
    "monetary_mean": 50.0,
    "monetary_max": 60.0,
    "gap_mean_days": 20.0,
    "gap_median_days": 20.0,
    "gap_std_days": 5.0,
    "lateness": 0.5,
    "active_week_share": 0.2,
    "loyalty_score": 0.5,
    "tenure_days": 200.0,
    "days_since_last_activity": 5.0,
    "browse_to_purchase": 0.2,
    "refund_rate": 0.0,
    "complaint_count": 0.0,
    "days_since_last_complaint": np.nan,
    "top_category": "books",
    "top_category_share": 0.5,
    "distinct_categories": 2.0,
    "category_entropy": 0.7,
    "age": 30.0,
    "age_band": "26-35",
    "gender": "female",
    "region": "north",
}

_STRINGS = {"top_category", "age_band", "gender", "region"}


def make_features(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A feature frame: ``customer_id`` c0, c1, ... with defaults filled in."""
    records = []
    for i, row in enumerate(rows):
        record = {"customer_id": row.get("customer_id", f"c{i}"), **_DEFAULTS, **row}
        if record["never_purchased"]:
            for key in ("recency_days", "gap_mean_days", "gap_median_days", "lateness"):
                record.setdefault(key, np.nan)
        records.append(record)
    frame = pd.DataFrame(records)
    for column in frame.columns:
        if column == "customer_id" or column in _STRINGS:
            frame[column] = frame[column].astype("string")
        elif column == "never_purchased":
            frame[column] = frame[column].astype(bool)
        else:
            frame[column] = frame[column].astype("float64")
    return frame


def make_events(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Canonical events from short records (amount defaults to 10 for purchases)."""
    out = []
    for row in rows:
        record = dict(row)
        if record["event_type"] in ("purchase", "refund"):
            record.setdefault("amount", 10.0)
        out.append(record)
    if not out:
        return events_frame(pd.DataFrame(columns=["customer_id", "occurred_at", "event_type"]))
    return events_frame(out)


@pytest.fixture(scope="session")
def library() -> Catalogue:
    """The shipped standard library."""
    return Catalogue.load(LIBRARY_DIR, event_types=EVENT_TYPES)
