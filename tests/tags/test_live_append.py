"""Live writes only append: the newest row of a (customer, tag) is its value, the
writer's memory copy of the current values gives the transitions reading the table
would, and compaction removes superseded rows without changing a value."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tags.live import compact_live, live_rows, write_live
from tags.live_state import LiveState
from tags.store import TagStore
from tags.store_governance import erase_customers
from tags.transitions import TransitionLog

TAGS = ["stage", "vip"]
JAN = [("c1", "stage", "active"), ("c1", "vip", "true"), ("c2", "stage", "active")]
FEB = [("c1", "stage", "churned"), ("c2", "stage", "churned")]


def _table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    df["score"] = np.nan
    df["source"] = "rule"
    df["version"] = "x@1"
    return df


def _store(path: Path) -> TagStore:
    store = TagStore(path)
    store.write_snapshot(_table(JAN), as_of="2024-01-31")
    return store


def _write(
    store: TagStore, rows: list[tuple[str, str, str]], state: LiveState | None, minute: int
) -> int:
    live = _table(rows)
    live["as_of"] = pd.Timestamp("2024-02-03", tz="UTC")
    customers = sorted({c for c, _, _ in rows} | {"c2"})
    with store.writer() as con:
        write = write_live(
            con,
            live,
            customers=customers,
            tags=TAGS,
            at=datetime(2024, 2, 3, 0, minute),
            state=state,
        )
    return write.group.n


def _values(store: TagStore) -> list[tuple[object, ...]]:
    with store.reader() as con:
        df = live_rows(con)
    return sorted(
        (r.customer_id, r.tag_id, None if pd.isna(r.value) else r.value, r.seq)
        for r in df.itertuples()
    )


def _changes(store: TagStore) -> list[tuple[object, ...]]:
    df = TransitionLog(store).transitions(0, 10**9)
    return sorted(
        (r.customer_id, r.tag_id, "" if pd.isna(r.from_value) else r.from_value, r.change)
        for r in df[df["source"] == "live"].itertuples()
    )


def _stored_rows(store: TagStore) -> int:
    with store.reader() as con:
        row = con.execute("SELECT count(*) FROM live_tags").fetchone()
    return int(row[0]) if row else 0


def test_rewrites_append_rows_and_readers_see_the_newest(tmp_path: Path) -> None:
    store = _store(tmp_path / "t.duckdb")
    _write(store, [("c1", "stage", "dormant")], None, 1)
    _write(store, [("c1", "stage", "active"), ("c2", "vip", "true")], None, 2)
    # Two writes of c1 and c2 over two tags: four rows each, nothing deleted.
    assert _stored_rows(store) == 8
    values = _values(store)
    assert [v[:3] for v in values] == [
        ("c1", "stage", "active"),
        ("c1", "vip", None),
        ("c2", "stage", None),
        ("c2", "vip", "true"),
    ]
    second = {v[3] for v in values}
    assert len(second) == 1
    with store.reader() as con:
        # From the start or after the first write: one row per pair, the newest.
        assert len(live_rows(con)) == 4
        assert len(live_rows(con, after_seq=second.pop() - 1)) == 4
        assert len(live_rows(con, customers=["c1"])) == 2


def test_compaction_deletes_superseded_rows_only(tmp_path: Path) -> None:
    store = _store(tmp_path / "t.duckdb")
    for minute, value in enumerate(["dormant", "active", "dormant"]):
        _write(store, [("c1", "stage", value)], None, minute)
    before = _values(store)
    assert _stored_rows(store) == 12
    with store.writer() as con:
        assert compact_live(con) == 8
        assert compact_live(con) == 0
    assert _stored_rows(store) == 4
    assert _values(store) == before
    # A later write still sees the right current values: dormant -> active is a change.
    assert _write(store, [("c1", "stage", "active")], None, 9) == 1


def test_memory_copy_gives_the_transitions_of_reading_the_table(tmp_path: Path) -> None:
    """Two writers (a service and a consumer) append to one store, with a batch run,
    a compaction and an erasure between their writes: each writer's memory copy must
    catch up with the other's rows, or it would record wrong (or miss) transitions."""
    recorded = []
    for memory in (False, True):
        store = _store(tmp_path / f"{memory}.duckdb")
        a, b = (LiveState(), LiveState()) if memory else (None, None)
        steps = [
            (a, [("c1", "stage", "dormant")]),
            (b, [("c1", "stage", "dormant"), ("c2", "vip", "true")]),
            (a, [("c1", "stage", "active"), ("c2", "vip", "true")]),
            ("run", []),
            (b, [("c1", "stage", "churned")]),
            ("compact", []),
            (a, [("c1", "stage", "active")]),
            ("erase", []),
            (b, [("c2", "stage", "active")]),
            (a, [("c2", "stage", "dormant")]),
        ]
        counts = []
        for minute, (who, rows) in enumerate(steps):
            if who == "run":
                store.write_snapshot(_table(FEB), as_of="2024-02-29")
            elif who == "compact":
                with store.writer() as con:
                    compact_live(con)
            elif who == "erase":
                erase_customers(store, ["c1"])
            else:
                assert not isinstance(who, str)
                counts.append(_write(store, rows, who, minute))
        recorded.append((counts, _changes(store), [v[:3] for v in _values(store)]))
    assert recorded[0] == recorded[1]
    counts = recorded[1][0]
    # b's first write repeats a's dormant for c1 (no change) but c2 gains vip.
    assert counts[1] == 1
    # After February's run c1 is churned in the snapshot: b's churned is no change
    # (only c2's stage leaves), which a copy of the values before the run would miss.
    assert counts[3] == 1


def test_state_counts_superseded_rows_for_compaction(tmp_path: Path) -> None:
    store = _store(tmp_path / "t.duckdb")
    state = LiveState()
    _write(store, [("c1", "stage", "dormant")], state, 1)
    assert state.superseded == 0
    _write(store, [("c1", "stage", "active")], state, 2)
    assert state.superseded == 4
    assert len(state) == 2
    with store.writer() as con:
        assert compact_live(con) == state.superseded
    state.compacted()
    assert state.superseded == 0


def test_compaction_after_the_first_reads_only_the_customers_whose_rows_were_superseded(
    tmp_path: Path,
) -> None:
    """Compacting every live row groups them all (0.6 s of CPU at 2.4M rows, the
    tagger's writes waiting): once a state has compacted, the next compaction reads only
    the customers its writes superseded rows of, and deletes what a full one would."""
    store = _store(tmp_path / "t.duckdb")
    before_state = LiveState()  # another run of the process: its rows stay superseded
    _write(store, [("c1", "stage", "dormant")], before_state, 1)
    _write(store, [("c1", "stage", "active")], before_state, 2)
    state = LiveState()
    _write(store, [("c3", "stage", "active")], state, 3)  # c2 again: its rows superseded
    assert state.compaction_scope() is None  # nothing known of the rows before this state
    with store.writer() as con:
        # c1's two writes before this state (4 rows), c2's first (2).
        assert compact_live(con, state.compaction_scope()) == 6
    state.compacted()
    assert state.compaction_scope() == []
    _write(store, [("c1", "stage", "churned")], state, 4)  # c1 and c2 again
    _write(store, [("c4", "stage", "active")], None, 5)  # another writer: c2 and c4
    _write(store, [("c4", "stage", "dormant")], None, 6)
    assert state.compaction_scope() == ["c1", "c2"]
    values = _values(store)
    with store.writer() as con:
        # Every superseded row of c1 and c2 (2 + 6, some by the other writer), none of
        # c4's: the other writer's state has those in its own scope.
        assert compact_live(con, state.compaction_scope()) == 8
        assert compact_live(con) == 2
    assert _values(store) == values
    with store.writer() as con:
        assert compact_live(con, []) == 0
