"""The import's two-stage helpers: same items in the same order, errors raised on the
caller's thread at the item they belong to, bounded look-ahead, no thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from features.pipeline import Ahead, Behind, ahead


def _alive(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_ahead_yields_every_item_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def source() -> Iterator[int]:
        for i in range(50):
            threads.append(threading.current_thread().name)
            yield i

    assert list(ahead(source(), name="test-ahead-order")) == list(range(50))
    assert set(threads) == {"test-ahead-order"}
    assert not _alive("test-ahead-order")


@pytest.mark.parametrize("depth", [1, 2])
def test_ahead_produces_at_most_depth_items_beyond_the_one_consumed(depth: int) -> None:
    produced = 0

    def source() -> Iterator[int]:
        nonlocal produced
        for i in range(10):
            produced += 1
            yield i

    seen = 0
    for item in ahead(source(), depth, name="test-ahead-depth"):
        seen += 1
        time.sleep(0.02)  # let the worker run as far as it may
        assert item == seen - 1
        assert produced <= seen + depth
    assert seen == 10


def test_ahead_raises_the_source_error_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("expected a third item, got a broken file")

    got: list[int] = []
    with pytest.raises(ValueError, match="broken file"):
        got.extend(ahead(source(), name="test-ahead-error"))
    assert got == [1, 2]
    assert not _alive("test-ahead-error")


def test_ahead_closes_the_source_when_the_consumer_stops_early() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    def consume() -> None:
        for item in ahead(source(), name="test-ahead-stop"):
            if item == 3:
                raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        consume()
    assert closed.is_set()
    assert not _alive("test-ahead-stop")


def test_ahead_refuses_a_depth_below_one() -> None:
    with pytest.raises(ValueError, match=r"expected at least 1\. Got 0"):
        next(ahead(iter([1]), 0))


def test_ahead_started_produces_before_it_is_asked_and_closes_unasked() -> None:
    produced = threading.Event()
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(100):
                produced.set()
                yield i
        finally:
            closed.set()

    # Nothing is asked for: the worker still produces the first item (one, not more).
    with Ahead(source(), name="test-ahead-started") as started:
        assert produced.wait(5)
        time.sleep(0.05)
        assert not closed.is_set()
    assert closed.is_set()
    assert not _alive("test-ahead-started")

    with Ahead(iter(range(5)), name="test-ahead-started-all") as started:
        assert list(started) == [0, 1, 2, 3, 4]
        assert list(started) == []  # exhausted stays exhausted
    assert not _alive("test-ahead-started-all")


def test_ahead_started_raises_the_source_error_at_its_item_on_any_thread() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("expected a second block, got a broken file")

    got: list[int] = []
    with Ahead(source(), name="test-ahead-started-err") as started:
        # Consumed on another thread than the one that made it, as the import's check
        # stage consumes the reader made on the importer's thread.
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                got.extend(started)
            except ValueError as exc:
                errors.append(exc)

        worker = threading.Thread(target=consume)
        worker.start()
        worker.join(5)
    assert got == [1]
    assert [str(e) for e in errors] == ["expected a second block, got a broken file"]
    assert not _alive("test-ahead-started-err")


def test_ahead_started_refuses_a_depth_below_one() -> None:
    with pytest.raises(ValueError, match=r"expected at least 1\. Got 0"):
        Ahead(iter([1]), 0)


def test_behind_runs_every_item_in_order_on_its_thread() -> None:
    done: list[tuple[int, str]] = []
    with Behind(
        lambda i: done.append((i, threading.current_thread().name)), name="test-behind"
    ) as behind:
        for i in range(20):
            behind.put(i)
        behind.finish()
    assert [i for i, _ in done] == list(range(20))
    assert {name for _, name in done} == {"test-behind"}
    assert not _alive("test-behind")


def test_behind_holds_at_most_one_item_beside_the_one_in_work() -> None:
    started = threading.Event()
    release = threading.Event()
    done: list[int] = []

    def work(i: int) -> None:
        if i == 0:
            started.set()
            release.wait(5)
        done.append(i)

    with Behind(work, name="test-behind-bound") as behind:
        behind.put(0)
        assert started.wait(5)
        waiting = threading.Thread(target=behind.put, args=(1,))
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # put(1) waits until item 0 is done
        release.set()
        waiting.join(5)
        behind.finish()
    assert done == [0, 1]


def test_behind_raises_the_work_error_at_the_next_call_and_skips_the_rest() -> None:
    done: list[int] = []

    def work(i: int) -> None:
        if i == 1:
            raise OSError("disk full")
        done.append(i)

    def feed() -> None:
        with Behind(work, name="test-behind-err") as behind:
            for i in range(5):
                behind.put(i)
            behind.finish()

    with pytest.raises(OSError, match="disk full"):
        feed()
    assert done == [0]
    assert not _alive("test-behind-err")


def test_behind_left_by_an_error_of_the_caller_runs_nothing_more() -> None:
    done: list[int] = []
    gate = threading.Event()

    def work(i: int) -> None:
        gate.wait(5)
        done.append(i)

    with pytest.raises(RuntimeError, match="caller failed"), Behind(work, name="test-behind-x"):
        raise RuntimeError("caller failed")
    assert not _alive("test-behind-x")

    def fail_after_one() -> None:
        with Behind(work, name="test-behind-y") as behind:
            behind.put(0)
            gate.set()
            raise RuntimeError("caller failed")

    with pytest.raises(RuntimeError, match="caller failed"):
        fail_after_one()
    assert done in ([], [0])
    assert not _alive("test-behind-y")
