"""In one process, a tag store's readers and writer take turns instead of retrying."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import tags.store_hold as store_module
from tags.store import TagStore
from tags.store_locks import FileTurns, turns_of


def _tags() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "tag_id": ["t", "t"],
            "value": ["a", "b"],
            "score": [None, None],
            "source": ["rule", "rule"],
            "version": ["", ""],
        }
    )


def test_a_writer_waits_for_this_process_reader_without_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    store.write_snapshot(_tags(), as_of="2024-01-01")
    pauses: list[float] = []
    real_sleep = time.sleep

    class _Clock:
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            real_sleep(seconds)

    # The retries of a refused open live in tags.store_hold (open_store).
    monkeypatch.setattr(store_module, "time", _Clock())
    reading = threading.Event()
    held_for = 0.3

    def reader() -> None:
        with store.reader() as con:
            con.execute("SELECT count(*) FROM snapshots").fetchall()
            reading.set()
            real_sleep(held_for)

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(10)
    started = time.monotonic()
    with store.writer() as con:
        con.execute("SELECT count(*) FROM snapshots").fetchall()
    waited = time.monotonic() - started
    thread.join(10)
    assert pauses == []  # no open was refused and retried
    assert waited < held_for + 0.25  # no backoff overshoot beyond the reader's hold


def test_a_waiting_writer_keeps_new_readers_out() -> None:
    turns = FileTurns()
    order: list[str] = []
    first_in = threading.Event()
    release_first = threading.Event()

    def first_reader() -> None:
        with turns.hold(write=False, timeout_s=5) as got:
            assert got
            first_in.set()
            release_first.wait(5)
            order.append("reader 1 out")

    def writer() -> None:
        with turns.hold(write=True, timeout_s=5):
            order.append("writer")

    def second_reader() -> None:
        with turns.hold(write=False, timeout_s=5):
            order.append("reader 2")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    assert first_in.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.1)  # the writer is waiting now
    threads.append(threading.Thread(target=second_reader))
    threads[2].start()
    time.sleep(0.1)
    assert order == []  # reader 2 queues behind the waiting writer
    release_first.set()
    for t in threads:
        t.join(5)
    assert order == ["reader 1 out", "writer", "reader 2"]


def test_nested_use_in_one_thread_does_not_wait_and_a_timeout_gives_up(tmp_path: Path) -> None:
    turns = turns_of(tmp_path / "x.duckdb")
    assert turns is turns_of(tmp_path / "." / "x.duckdb")
    with turns.hold(write=True, timeout_s=1) as outer:
        assert outer
        with turns.hold(write=False, timeout_s=1) as inner:  # same thread: no wait
            assert inner
        seen: list[bool] = []

        def other() -> None:
            with turns.hold(write=False, timeout_s=0.1) as got:
                seen.append(got)

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert seen == [False]  # another thread gave up after its timeout
