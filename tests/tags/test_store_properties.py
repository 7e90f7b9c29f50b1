"""Invariants of diffs and coverage over random snapshots (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tags.store import TagStore
from tests.tags.conftest import long_table

CUSTOMERS = [f"c{i}" for i in range(8)]
TAGS = {"lifecycle": ["new", "active", "dormant"], "old_customer": ["true"]}


@st.composite
def snapshots(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    rows = []
    for tag, values in TAGS.items():
        for c in CUSTOMERS:
            value = draw(st.sampled_from([None, *values]))
            if value is not None:
                rows.append((c, tag, value))
    return rows


def _state(rows) -> dict[tuple[str, str], str]:
    return {(c, t): v for c, t, v in rows}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=snapshots(), after=snapshots())
def test_diff_applied_to_the_earlier_snapshot_gives_the_later(before, after) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = TagStore(Path(tmp) / "t.duckdb")
        store.write_snapshot(long_table(before, "2024-01-31"), as_of="2024-01-31")
        store.write_snapshot(long_table(after, "2024-02-29"), as_of="2024-02-29")
        changes = store.diff("2024-01-31", "2024-02-29")
        state = _state(before)
        for r in changes.to_dict("records"):
            key = (r["customer_id"], r["tag_id"])
            assert state.get(key) == (None if pd.isna(r["from_value"]) else r["from_value"])
            if pd.isna(r["to_value"]):
                del state[key]
            else:
                state[key] = r["to_value"]
        assert state == _state(after)
        summary = store.diff_summary(changes)
        cov = store.coverage().set_index(["tag_id", "value"])
        for s in summary.to_dict("records"):
            key = (s["tag_id"], s["value"])
            if key in cov.index:
                # Net change of a value = its count now minus its count before.
                assert s["net"] == cov.loc[key, "count"] - cov.loc[key, "prev_count"]
