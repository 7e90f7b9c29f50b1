"""Live writes take the newest snapshot from memory only while it is still the newest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tags.live import write_live
from tags.live_snapshot import NewestSnapshot
from tags.store import TagStore
from tags.store_governance import erase_customers
from tags.transitions import TransitionLog

TAGS = ["stage", "vip"]


def table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    df["score"] = np.nan
    df["source"] = "rule"
    df["version"] = "x@1"
    return df


def live(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    df = table(rows)
    df["as_of"] = pd.Timestamp("2024-02-03", tz="UTC")
    return df


JAN = [
    ("c1", "stage", "active"),
    ("c1", "vip", "true"),
    ("c2", "stage", "active"),
    ("c10", "stage", "dormant"),
    ("é", "stage", "churned"),
]
FEB = [("c1", "stage", "dormant"), ("c2", "stage", "churned")]


@pytest.fixture
def store(tmp_path: Path) -> TagStore:
    s = TagStore(tmp_path / "tags.duckdb")
    s.write_snapshot(table(JAN), as_of="2024-01-31")
    return s


def load(store: TagStore) -> NewestSnapshot:
    with store.reader() as con:
        snap = NewestSnapshot.load(con)
    assert snap is not None
    return snap


def test_rows_of_matches_the_table_for_any_mix_of_known_and_unknown_customers(
    store: TagStore,
) -> None:
    snap = load(store)
    assert snap.rows == len(JAN)
    wanted = ["é", "nobody", "c1", "c10", "c1"]
    got = snap.rows_of(wanted).to_pylist()
    expected = [
        {"customer_id": c, "tag_id": t, "value": v}
        for w in wanted
        for c, t, v in sorted(JAN)
        if c == w
    ]
    assert sorted(got, key=str) == sorted(expected, key=str)
    assert snap.rows_of([]).num_rows == 0
    assert snap.rows_of(["nobody"]).num_rows == 0


def _write(store: TagStore, rows: list[tuple[str, str, str]], snap: NewestSnapshot | None) -> bool:
    customers = sorted({c for c, _, _ in rows} | {"c2"})
    with store.writer() as con:
        write = write_live(
            con, live(rows), customers=customers, tags=TAGS, at=datetime(2024, 2, 3), snapshot=snap
        )
    return write.snapshot_in_memory


def _changes(store: TagStore) -> list[tuple[object, ...]]:
    df = TransitionLog(store).transitions(0, 10**9)
    df = df[df["source"] == "live"]
    return sorted(
        (r.customer_id, r.tag_id, _text(r.from_value), _text(r.to_value), r.change)
        for r in df.itertuples()
    )


def _text(value: object) -> object:
    return None if pd.isna(value) else value


def test_a_write_from_memory_records_the_same_transitions_as_one_reading_the_table(
    tmp_path: Path,
) -> None:
    recorded = []
    for use_memory in (False, True):
        store = TagStore(tmp_path / f"{use_memory}.duckdb")
        store.write_snapshot(table(JAN), as_of="2024-01-31")
        snap = load(store) if use_memory else None
        # c1 loses vip and goes dormant, c2 (no rows) loses its stage, é is untouched.
        assert _write(store, [("c1", "stage", "dormant")], snap) is use_memory
        assert _write(store, [("c1", "stage", "active"), ("c2", "vip", "true")], snap) is use_memory
        recorded.append(_changes(store))
    assert recorded[0] == recorded[1]
    assert ("c1", "vip", "true", None, "left") in recorded[1]
    assert ("c2", "stage", "active", None, "left") in recorded[1]


def test_a_stale_copy_is_never_used_after_a_batch_run_or_an_erasure(store: TagStore) -> None:
    snap = load(store)
    store.write_snapshot(table(FEB), as_of="2024-02-29")
    assert not _write(store, [("c2", "stage", "active")], snap)
    # Against February's snapshot c2 was churned: the change recorded says so.
    assert ("c2", "stage", "churned", "active", "changed") in _changes(store)
    fresh = load(store)
    assert _write(store, [("c2", "stage", "dormant")], fresh)
    erase_customers(store, ["c1"])
    assert not _write(store, [("c2", "stage", "active")], fresh)


def _snapshot_of(ids: list[str]) -> NewestSnapshot:
    """A snapshot of one ``stage`` row per id (ids sorted and distinct, as ``load`` has)."""
    import pyarrow as pa

    ordered = np.asarray(sorted(set(ids)), dtype=object)
    n = len(ordered)
    table = pa.table(
        {
            "tag_id": pa.array(["stage"] * n).dictionary_encode(),
            "value": pa.array([f"v{i}" for i in range(n)]).dictionary_encode(),
        }
    )
    starts = np.arange(n, dtype=np.int64)
    key = ("r", datetime(2024, 1, 31), "0")
    return NewestSnapshot(key, ordered, starts, starts + 1, table)


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(alphabet=st.sampled_from("ab\x00é\U0001f600Z0"), max_size=6), max_size=30),
    extra=st.lists(
        st.text(alphabet=st.sampled_from("ab\x00é\U0001f600Z0"), max_size=9), max_size=10
    ),
)
def test_place_by_byte_search_equals_the_search_over_the_ids(
    ids: list[str], extra: list[str]
) -> None:
    snap = _snapshot_of(ids)
    wanted = extra + ids[::2]
    fast = np.full(len(wanted), None, dtype=object)
    snap.place(wanted, ["stage"], fast)
    # The reference: the ids themselves, looked up one by one.
    value_of = {c: f"v{i}" for i, c in enumerate(snap.ids.tolist())}
    assert fast.tolist() == [value_of.get(w) for w in wanted]
    if snap.search_keys is not None:
        assert len(snap.search_keys) == len(snap.ids)
