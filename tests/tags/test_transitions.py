"""Transitions recorded by the tag store: what each run changed, in order, atomically."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tags.store import TagStore
from tags.transitions import TransitionLog, record_transitions


def table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    df["score"] = np.nan
    df["source"] = "rule"
    df["version"] = "x@1"
    return df


JAN = [("c1", "stage", "active"), ("c2", "stage", "active"), ("c1", "vip", "true")]
FEB = [("c1", "stage", "dormant"), ("c2", "stage", "active"), ("c3", "vip", "true")]


@pytest.fixture
def store(tmp_path: Path) -> TagStore:
    return TagStore(tmp_path / "tags.duckdb")


def changes(log: TransitionLog) -> set[tuple[str, str, object, object, str]]:
    df = log.transitions(0, 10**9)
    return {
        (
            r.customer_id,
            r.tag_id,
            None if pd.isna(r.from_value) else r.from_value,
            None if pd.isna(r.to_value) else r.to_value,
            r.change,
        )
        for r in df.itertuples()
    }


def test_a_run_records_who_entered_left_and_changed(store: TagStore) -> None:
    store.write_snapshot(table(JAN), as_of="2024-01-31")
    log = TransitionLog(store)
    assert log.last_seq() == 0
    assert log.groups(0) == []  # the first snapshot has nothing to change from
    store.write_snapshot(table(FEB), as_of="2024-02-29")
    assert changes(log) == {
        ("c1", "stage", "active", "dormant", "changed"),
        ("c1", "vip", "true", None, "left"),
        ("c3", "vip", None, "true", "entered"),
    }
    [group] = log.groups(0)
    assert (group.after_seq, group.last_seq, group.n, group.source) == (0, 3, 3, "batch")
    assert group.as_of == pd.Timestamp("2024-02-29", tz="UTC")
    assert group.run_id == store.run_info().run_id
    assert log.transitions(0, 3)["seq"].tolist() == [1, 2, 3]


def test_backfills_record_nothing_and_reruns_diff_against_what_they_replace(
    store: TagStore,
) -> None:
    store.write_snapshot(table(JAN), as_of="2024-01-31")
    store.write_snapshot(table(FEB), as_of="2024-02-29")
    log = TransitionLog(store)
    store.write_snapshot(table([("c9", "stage", "new")]), as_of="2023-12-31")
    assert log.last_seq() == 3  # an older date does not change the current state
    rerun = [*FEB, ("c2", "vip", "true")]
    store.write_snapshot(table(rerun), as_of="2024-02-29", force=True)
    assert log.last_seq() == 4
    assert list(
        log.transitions(3, 4)[["customer_id", "tag_id", "change"]].itertuples(index=False)
    ) == [("c2", "vip", "entered")]


def test_a_failed_run_records_no_transition(
    store: TagStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_snapshot(table(JAN), as_of="2024-01-31")

    def boom(self: TagStore, con: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(TagStore, "_before_commit", boom)
    with pytest.raises(RuntimeError):
        store.write_snapshot(table(FEB), as_of="2024-02-29")
    monkeypatch.undo()
    assert TransitionLog(store).last_seq() == 0
    store.write_snapshot(table(FEB), as_of="2024-02-29")
    assert TransitionLog(store).last_seq() == 3


def test_live_changes_overlay_the_snapshot_and_the_next_batch_run_diffs_against_them(
    store: TagStore,
) -> None:
    store.write_snapshot(table(JAN), as_of="2024-01-31")
    with store._connect(write=True) as con:
        con.begin()
        con.execute(
            "CREATE TEMP TABLE live AS SELECT 'c2' AS customer_id, 'stage' AS tag_id, "
            "'active' AS from_value, 'churned' AS to_value"
        )
        group = record_transitions(con, "live", group_id="live-1", at=datetime(2024, 2, 3))
        con.commit()
    assert (group.n, group.source) == (1, "live")
    log = TransitionLog(store)
    # The batch run of February sees c2 'churned' (live) and moves it back to 'active'.
    store.write_snapshot(table(FEB), as_of="2024-02-29")
    batch = log.transitions(1, 10)
    c2 = batch[batch["customer_id"] == "c2"]
    assert c2[["from_value", "to_value"]].values.tolist() == [["churned", "active"]]


def naive_state(rows: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    return {(c, t): v for c, t, v in rows}


snapshots = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.sampled_from(["s", "v"]),
            st.sampled_from(["x", "y", "z"]),
        ),
        max_size=8,
        unique_by=lambda r: (r[0], r[1]),
    ),
    min_size=2,
    max_size=5,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=snapshots)
def test_states_match_the_snapshots_even_with_later_runs(tmp_path: Path, runs: list) -> None:
    """Oracle: the state around each group equals the snapshots it went between."""
    path = tmp_path / f"t{abs(hash(str(runs)))}.duckdb"
    store = TagStore(path)
    dates = pd.date_range("2024-01-31", periods=len(runs), freq="ME", tz="UTC")
    for rows, d in zip(runs, dates, strict=True):
        store.write_snapshot(table(rows), as_of=d)
    log = TransitionLog(store)
    groups = {g.as_of: g for g in log.groups(0, limit=100)}
    for i in range(1, len(runs)):
        group = groups.get(dates[i])
        before, after = naive_state(runs[i - 1]), naive_state(runs[i])
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        if group is None:
            assert not changed
            continue
        states = log.states(group, watch=["s", "v"], tags=["s", "v"])
        got = {
            (r.customer_id, r.tag_id): (
                None if pd.isna(r.before) else r.before,
                None if pd.isna(r.after) else r.after,
            )
            for r in states.itertuples()
        }
        touched = {c for c, _ in changed}
        want = {
            (c, t): (before.get((c, t)), after.get((c, t)))
            for c in touched
            for t in ("s", "v")
            if before.get((c, t)) is not None or after.get((c, t)) is not None
        }
        assert got == want
    path.unlink()
