"""The tagger's two stages (streaming.pipeline): the next micro-batch is stored while one
is tagged, micro-batches are tagged in the order they were stored, and a failure in
either stage fails its own callers only."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from streaming.config import StreamingConfig
from streaming.consumer import consume, ensure_stream
from streaming.tagger import live_as_of
from tests.streaming.conftest import NOW, Setup, records
from tests.streaming.natsserver import nats_server


def _wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _in_thread(target: Callable[[], Any], out: dict[str, Any], key: str) -> threading.Thread:
    def run() -> None:
        try:
            out[key] = target()
        except BaseException as exc:  # reported by the test
            out[key] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _assert_live_values_follow_every_stored_event(setup: Setup, batch: list[Any]) -> None:
    touched = sorted({str(r["customer_id"]) for r in batch})
    write, _ = setup.tagger.retag(touched, as_of=live_as_of(NOW), at=NOW)
    assert write.group.n == 0  # re-tagging them from every stored event changes nothing
    assert setup.tagger.recover() == 0  # every segment was tagged


def _first_retag_held(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event, list[list[str]]]:
    """The first micro-batch's re-tag waits for the test (set the second event)."""
    real = setup.tagger._retag.grid
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def grid(customers: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(customers))
        if len(calls) == 1:
            entered.set()
            assert release.wait(60)
        return real(customers, *args, **kwargs)

    monkeypatch.setattr(setup.tagger._retag, "grid", grid)
    return entered, release, calls


def test_the_next_batch_is_stored_while_one_is_tagged_and_tagged_after_it(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = records(setup.later)
    half = len(batch) // 2
    first, second = batch[:half], batch[half:]
    assert {r["customer_id"] for r in first} & {r["customer_id"] for r in second}
    entered, release, calls = _first_retag_held(setup, monkeypatch)
    out: dict[str, Any] = {}
    t1 = _in_thread(lambda: setup.tagger.apply(first, source="one"), out, "first")
    assert entered.wait(60)
    assert len(setup.live.segments()) == 1  # durable before it is tagged
    t2 = _in_thread(lambda: setup.tagger.apply(second, source="two"), out, "second")
    # The second batch is validated and stored while the first is still being tagged...
    assert _wait_for(lambda: len(setup.live.segments()) == 2)
    assert len(setup.live.load_events()) == len(batch)
    time.sleep(0.3)
    # ...and tagged only after it: neither caller has an answer yet.
    assert out == {}
    assert len(calls) == 1
    release.set()
    t1.join(120)
    t2.join(120)
    first_result, second_result = out["first"], out["second"]
    assert first_result.accepted == len(first)
    assert second_result.accepted == len(second)
    assert first_result.seq < second_result.seq  # written in the order stored
    assert len(calls) == 2
    _assert_live_values_follow_every_stored_event(setup, batch)


def test_a_failed_re_tag_fails_its_callers_only_and_recover_tags_its_segment(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = records(setup.later)
    half = len(batch) // 2
    real = setup.tagger._retag.grid
    failures = [1]

    def grid(*args: Any, **kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("re-tag failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(setup.tagger._retag, "grid", grid)
    with pytest.raises(RuntimeError, match="re-tag failed"):
        setup.tagger.apply(batch[:half], source="one")
    assert len(setup.live.load_events()) == half  # durable, not tagged
    assert not setup.tagger._lock.locked()
    assert not setup.tagger._tag_lock.locked()
    later = setup.tagger.apply(batch[half:], source="two")  # the tagger goes on
    assert later.accepted == len(batch) - half
    first_customers = {str(r["customer_id"]) for r in batch[:half]}
    assert setup.tagger.recover() == len(first_customers)
    _assert_live_values_follow_every_stored_event(setup, batch)


def test_a_failed_store_fails_its_callers_only(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = records(setup.later)
    real = setup.live.append
    failures = [1]

    def append(*args: Any, **kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(setup.live, "append", append)
    with pytest.raises(OSError, match="disk full"):
        setup.tagger.apply(batch, source="one")
    assert len(setup.live.segments()) == 0
    assert not setup.tagger._lock.locked()
    assert not setup.tagger._tag_lock.locked()
    again = setup.tagger.apply(batch, source="one, again")
    assert (again.accepted, again.duplicates) == (len(batch), 0)
    _assert_live_values_follow_every_stored_event(setup, batch)


def test_many_concurrent_callers_all_get_answers_and_every_event_is_stored_once(
    setup: Setup,
) -> None:
    batch = records(setup.later)
    parts = [batch[i : i + 3] for i in range(0, min(len(batch), 48), 3)]
    out: dict[str, Any] = {}
    threads = [
        _in_thread(
            lambda p=part: setup.tagger.apply(p, source="many"),  # type: ignore[misc]
            out,
            str(k),
        )
        for k, part in enumerate(parts)
    ]
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads)
    errors = [v for v in out.values() if isinstance(v, BaseException)]
    assert not errors, errors
    assert sum(out[str(k)].accepted for k in range(len(parts))) == sum(len(p) for p in parts)
    assert len(setup.live.load_events()) == sum(len(p) for p in parts)
    # Each micro-batch has its own write, in store order: its callers share its seq.
    seqs = sorted({out[str(k)].seq for k in range(len(parts))})
    assert len(seqs) == len(setup.live.segments())
    _assert_live_values_follow_every_stored_event(setup, [r for p in parts for r in p])


def test_the_consumer_stores_the_next_message_while_one_is_tagged_and_acks_after_tagging(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = StreamingConfig(batch_size=20, batch_wait_s=0.2)
    batch = records(setup.later)
    first, rest = batch[:5], batch[5:]
    entered, release, calls = _first_retag_held(setup, monkeypatch)

    async def publish(url: str, body: list[Any]) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await ensure_stream(js, cfg, cfg.subject)
        await js.publish("events.shop", json.dumps(body).encode())
        await nc.close()

    async def unacked(url: str) -> int:
        nc = await nats.connect(url)
        info = await nc.jetstream().consumer_info(cfg.stream, cfg.durable)
        await nc.close()
        return int(info.num_ack_pending) + int(info.num_pending)

    async def run(url: str) -> None:
        await publish(url, first)
        stop = asyncio.Event()
        consumer = asyncio.ensure_future(
            consume(setup.tagger, cfg, url=url, subject=cfg.subject, stop=stop, max_messages=2)
        )
        assert await asyncio.to_thread(entered.wait, 60)
        await publish(url, rest)
        deadline = time.monotonic() + 60
        while len(setup.live.segments()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # The second message is stored while the first is still being tagged; neither
        # is acknowledged before its micro-batch is tagged.
        assert len(setup.live.segments()) == 2
        assert len(calls) == 1
        assert await unacked(url) == 2
        release.set()
        report = await asyncio.wait_for(consumer, 120)
        assert (report.messages, report.accepted, report.batches) == (2, len(batch), 2)
        assert await unacked(url) == 0

    with nats_server(tmp_path / "nats") as url:
        asyncio.run(run(url))
    assert len(calls) == 2
    assert set(calls[0]) == {str(r["customer_id"]) for r in first}
    _assert_live_values_follow_every_stored_event(setup, batch)
