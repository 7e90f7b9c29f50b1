"""Live transitions computed over arrays equal the per-(customer, tag) loop they replaced.

The reference is the loop ``tags.live._changes`` ran before (copied here verbatim): the
current value of a (customer, tag) is its live value when the customer has a live row
for the tag, else the newest snapshot's; a change is any evaluated value that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tags.live import _changes, _overlay, _place
from tags.live_snapshot import NewestSnapshot
from tags.live_state import LiveState

POOL = [f"c{i}" for i in range(12)]
TAGS = ["stage", "vip", "churn_risk", "rfm", "tier"]
VALUES = [None, "a", "b", "c"]


def _loop(
    customers: Sequence[str],
    tags: Sequence[str],
    new: Sequence[str | None],
    snapshot: dict[str, dict[str, str | None]],
    live_of: Callable[[str], dict[str, str | None] | None],
) -> list[tuple[str, str, str | None, str | None]]:
    """The loop of ``tags.live._changes`` before it was vectorised."""
    out = []
    width = len(tags)
    for i, cid in enumerate(customers):
        live = live_of(cid) or {}
        snap = snapshot.get(cid, {})
        for j, tag in enumerate(tags):
            old = live[tag] if tag in live else snap.get(tag)
            value = new[i * width + j]
            if old != value:
                out.append((cid, tag, old, value))
    return out


value = st.sampled_from(VALUES)
tag_subset = st.lists(st.sampled_from([*TAGS, "other"]), min_size=1, max_size=6, unique=True)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, ...]:
    customers = draw(st.lists(st.sampled_from(POOL), max_size=10, unique=True))
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=0, max_size=5, unique=True))
    new = [draw(value) for _ in range(len(customers) * len(tags))]
    snapshot_pairs = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(POOL), st.sampled_from([*TAGS, "other"])), value, max_size=40
        )
    )
    # Earlier live writes, each of some customers and some tags (a different tag list
    # than this write's exercises the per-tag overlay).
    writes = draw(
        st.lists(
            st.tuples(st.lists(st.sampled_from(POOL), max_size=6, unique=True), tag_subset),
            max_size=4,
        )
    )
    live_values = [[draw(value) for _ in range(len(ids) * len(wtags))] for ids, wtags in writes]
    return customers, tags, new, snapshot_pairs, writes, live_values


@settings(max_examples=300, deadline=None)
@given(cases())
def test_vectorised_changes_equal_the_loop(case: tuple[Any, ...]) -> None:
    customers, tags, new, snapshot_pairs, writes, live_values = case
    state = LiveState()
    for seq, ((ids, wtags), values) in enumerate(zip(writes, live_values, strict=True), 1):
        state.record(ids, wtags, values, seq)
    snapshot: dict[str, dict[str, str | None]] = {}
    for (cid, tag), v in snapshot_pairs.items():
        snapshot.setdefault(cid, {})[tag] = v
    expected = _loop(customers, tags, new, snapshot, state.values_of)

    rows = pa.table(
        {
            "customer_id": pa.array([c for c, _ in snapshot_pairs], pa.string()),
            "tag_id": pa.array([t for _, t in snapshot_pairs], pa.string()),
            "value": pa.array(list(snapshot_pairs.values()), pa.string()),
        }
    )
    current = np.full(len(customers) * len(tags), None, dtype=object)
    _place(current, customers, tags, rows)
    state.overlay(customers, tags, current)
    got = _changes(customers, tags, np.asarray(new, dtype=object), current)
    assert (
        list(
            zip(
                got["customer_id"].to_pylist(),
                got["tag_id"].to_pylist(),
                got["from_value"].to_pylist(),
                got["to_value"].to_pylist(),
                strict=True,
            )
        )
        == expected
    )

    # The same overlay from the table's live rows (a writer without a LiveState).
    live = {c: v for c in POOL if (v := state.values_of(c)) is not None}
    again = np.full(len(customers) * len(tags), None, dtype=object)
    _place(again, customers, tags, rows)
    _overlay(again, customers, tags, live)
    assert list(again) == list(current)


def test_superseded_counts_the_pairs_a_write_replaces() -> None:
    state = LiveState()
    state.record(["a", "b"], ["x", "y"], ["1", None, "2", "3"], 1)
    assert state.superseded == 0
    state.record(["a"], ["x", "y"], ["4", "5"], 2)  # the same tag tuple: both replaced
    assert state.superseded == 2
    state.record(["b"], ["y", "z"], ["6", None], 3)  # another tuple: only y replaced
    assert state.superseded == 3
    assert state.values_of("b") == {"x": "2", "y": "6", "z": None}


def _snapshot(pairs: dict[tuple[str, str], str | None]) -> NewestSnapshot:
    """A snapshot held in memory as ``NewestSnapshot.load`` builds it (sorted runs)."""
    rows = sorted(pairs.items())
    ids = sorted({c for (c, _), _ in rows})
    ends = np.cumsum([sum(1 for (c, _), _ in rows if c == cid) for cid in ids]).astype(np.int64)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
    table = pa.table(
        {
            "tag_id": pc.dictionary_encode(pa.array([t for (_, t), _ in rows], pa.string())),
            "value": pc.dictionary_encode(pa.array([v for _, v in rows], pa.string())),
        }
    )
    key = ("run", datetime(2024, 1, 1), "0")
    return NewestSnapshot(key, np.asarray(ids, dtype=object), starts, ends, table)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from(POOL), st.sampled_from([*TAGS, "other"])), value, max_size=40
    ),
    st.lists(st.sampled_from([*POOL, "unknown"]), max_size=10, unique=True),
    st.lists(st.sampled_from(TAGS), max_size=5, unique=True),
)
def test_snapshot_place_equals_its_rows_placed(
    pairs: dict[tuple[str, str], str | None], customers: list[str], tags: list[str]
) -> None:
    snapshot = _snapshot(pairs)
    want = np.full(len(customers) * len(tags), None, dtype=object)
    _place(want, customers, tags, snapshot.rows_of(customers))
    got = np.full(len(customers) * len(tags), None, dtype=object)
    snapshot.place(customers, tags, got)
    assert list(got) == list(want)
    expected = [pairs.get((c, t)) for c in customers for t in tags]
    assert list(got) == expected
