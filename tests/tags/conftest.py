"""Hand-made tag snapshots and a tiny catalogue for the tag store tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
