"""Shared tag-test helpers: hand-made tag snapshots and a tiny catalogue for the tag
store tests; hand-made feature frames with the fixed core feature names (TEAM contract)
and the standard library for the rule tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.schema import events_frame
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.store import TagStore


@dataclass(frozen=True)
class Tag:
    """Just what the policy and readers need of a catalogue definition."""

    id: str
    category: str
    sensitivity: str
    value_type: str = "ordinal"
    status: str = "active"


CATALOGUE = {
    t.id: t
    for t in [
        Tag("lifecycle", "lifecycle", "internal"),
        Tag("rfm_segment", "value", "internal"),
        Tag("old_customer", "behaviour", "public", value_type="boolean"),
        Tag("churn_risk", "risk", "internal", value_type="score"),
        Tag("age_band", "attribute", "restricted"),
    ]
}


def long_table(rows: list[tuple[str, str, str]], as_of: str, *, scores=None) -> pd.DataFrame:
    """The engine's long format from (customer, tag, value) triples."""
    df = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    df["score"] = np.nan if scores is None else scores
    df["source"] = np.where(df["tag_id"] == "churn_risk", "model", "rule")
    df["version"] = df["tag_id"] + "@1"
    df["as_of"] = pd.Timestamp(as_of, tz="UTC")
    return df


JAN = [
    ("c1", "lifecycle", "new"),
    ("c2", "lifecycle", "active"),
    ("c3", "lifecycle", "active"),
    ("c4", "lifecycle", "dormant"),
    ("c1", "old_customer", "true"),
    ("c3", "old_customer", "true"),
    ("c2", "rfm_segment", "important_value"),
    ("c3", "rfm_segment", "general_value"),
    ("c1", "age_band", "26-35"),
    ("c2", "age_band", "36-45"),
]
FEB = [
    ("c1", "lifecycle", "active"),  # new -> active
    ("c2", "lifecycle", "active"),  # unchanged
    ("c3", "lifecycle", "dormant"),  # active -> dormant
    # c4 has no lifecycle row any more: left 'dormant'
    ("c5", "lifecycle", "new"),  # entered 'new'
    ("c1", "old_customer", "true"),  # unchanged
    ("c2", "old_customer", "true"),  # entered
    # c3 left old_customer
    ("c2", "rfm_segment", "important_value"),
    ("c3", "rfm_segment", "important_value"),  # general -> important
    ("c1", "age_band", "26-35"),
    ("c2", "age_band", "36-45"),
]


@pytest.fixture
def catalogue() -> dict[str, Tag]:
    return dict(CATALOGUE)


@pytest.fixture
def store(tmp_path: Path) -> TagStore:
    """A store with two hand-made snapshots: 2024-01-31 and 2024-02-29."""
    s = TagStore(tmp_path / "tags.duckdb")
    s.write_snapshot(long_table(JAN, "2024-01-31"), as_of="2024-01-31", fingerprint="jan")
    s.write_snapshot(long_table(FEB, "2024-02-29"), as_of="2024-02-29", fingerprint="feb")
    return s


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
