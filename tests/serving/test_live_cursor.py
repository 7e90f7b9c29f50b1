"""The service's live overlay never moves its poll cursor past another writer's rows."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serving.runtime import ServingRuntime
from tests.serving.fakes import make_runtime

AT = pd.Timestamp("2025-01-01", tz="UTC")


def _rows(seq: int, customer: str, value: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [customer],
            "tag_id": ["lifecycle"],
            "value": [value],
            "score": [float("nan")],
            "source": ["rule"],
            "version": ["lifecycle@1"],
            "as_of": [AT],
            "updated_at": [AT],
            "seq": [seq],
        }
    )


class StoreIngest:
    """The live rows of one store, written by this process and by others."""

    def __init__(self) -> None:
        self.written: list[pd.DataFrame] = []
        self.reads: list[int] = []

    def ingest(
        self, records: list[Any], *, source: str
    ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
        raise AssertionError("the runtime's merges do not ingest")

    def live_rows(self, after_seq: int) -> pd.DataFrame:
        self.reads.append(after_seq)
        rows = pd.concat(self.written, ignore_index=True)
        return rows[rows["seq"] > after_seq].reset_index(drop=True)


@pytest.fixture
def served(tmp_path: Path) -> tuple[ServingRuntime, StoreIngest]:
    """A started runtime over fakes whose live rows come from a :class:`StoreIngest`."""
    runtime, *_ = make_runtime(keys_path=tmp_path / "keys.json")
    store = StoreIngest()
    runtime.event_ingest = store
    runtime.keeper.start()
    return runtime, store


def _overlay_value(runtime: ServingRuntime, customer: str) -> bytes:
    state = runtime.keeper.state
    run_id = state.snapshot.run_id if state.snapshot else None
    value = runtime.live_overlay(run_id).rows.get(customer, {}).get("lifecycle")
    assert value is not None, f"expected a live value of {customer}, got none"
    return value


def _run_id(runtime: ServingRuntime) -> str | None:
    snapshot = runtime.keeper.state.snapshot
    return snapshot.run_id if snapshot else None


def test_another_writers_rows_between_two_own_writes_reach_tags(
    served: tuple[ServingRuntime, StoreIngest],
) -> None:
    runtime, store = served

    own = _rows(1, "c0001", "active")
    store.written.append(own)
    runtime.merge_live(own)
    # A stream consumer in another process commits seq 2; before the poll reads it, this
    # process commits seq 3 and merges it.
    store.written.append(_rows(2, "c0002", "lapsed"))
    mine = _rows(3, "c0003", "new")
    store.written.append(mine)
    runtime.merge_live(mine)
    runtime.refresh_live()

    assert b'"lapsed"' in _overlay_value(runtime, "c0002")
    assert b'"new"' in _overlay_value(runtime, "c0003")
    assert runtime.live_overlay(_run_id(runtime)).seq == 3


def test_consecutive_own_writes_read_nothing_back(
    served: tuple[ServingRuntime, StoreIngest],
) -> None:
    runtime, store = served
    for seq in (1, 2, 3):
        rows = _rows(seq, f"c000{seq}", "active")
        store.written.append(rows)
        runtime.merge_live(rows)
    assert store.reads == [0]  # the overlay's first load only
    assert runtime.live_overlay(_run_id(runtime)).seq == 3


def test_a_newer_own_value_is_not_overwritten_by_an_older_foreign_row(
    served: tuple[ServingRuntime, StoreIngest],
) -> None:
    runtime, store = served
    store.written.append(_rows(1, "c0001", "lapsed"))  # another process, not yet polled
    mine = _rows(2, "c0001", "active")
    store.written.append(mine)
    runtime.merge_live(mine)
    runtime.refresh_live()
    assert b'"active"' in _overlay_value(runtime, "c0001")


class PausingIngest(StoreIngest):
    """A :class:`StoreIngest` whose own writes can be paused (``writes_paused``), as the
    real tagger's: a write holds the pause from its commit until its rows are merged."""

    def __init__(self) -> None:
        super().__init__()
        self.pause = threading.Lock()

    def writes_paused(self) -> AbstractContextManager[None]:
        return self.pause


def test_the_poll_does_not_read_back_an_own_write_committed_but_not_yet_merged(
    tmp_path: Path,
) -> None:
    runtime, *_ = make_runtime(keys_path=tmp_path / "keys.json")
    store = PausingIngest()
    runtime.event_ingest = store
    runtime.keeper.start()
    store.written.append(_rows(1, "c0001", "active"))
    runtime.merge_live(store.written[0])
    read: list[int] = []
    committed = threading.Event()

    def write() -> None:  # the tagger's _write: commit, then hand the rows to merge_live
        with store.pause:
            mine = _rows(2, "c0002", "new")
            store.written.append(mine)  # committed: visible to readers of the store
            committed.set()
            time.sleep(0.3)  # the poll comes now, between the commit and the merge
            runtime.merge_live(mine)

    writer = threading.Thread(target=write)
    writer.start()
    committed.wait(5)
    poll = threading.Thread(target=lambda: read.append(runtime.refresh_live()))
    poll.start()
    writer.join(5)
    poll.join(5)
    # The poll waited for the merge and then had nothing to read: the write's rows
    # were merged once, by merge_live.
    assert read == [0]
    assert b'"new"' in _overlay_value(runtime, "c0002")
    assert runtime.live_overlay(_run_id(runtime)).seq == 2
