"""The JetStream consumer against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats

from features.schema import ReasonCode
from streaming.config import StreamingConfig
from streaming.consumer import FetchSize, _Buffer, _records, consume, ensure_stream
from tags.live import live_rows
from tests.streaming.conftest import Setup, records
from tests.streaming.natsserver import nats_server


async def _publish(url: str, cfg: StreamingConfig, bodies: list[bytes]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, cfg, cfg.subject)
    acks = [await js.publish("events.shop", body) for body in bodies]
    assert len(acks) == len(bodies)
    await nc.close()


def test_consumer_applies_acks_and_quarantines_poison(setup: Setup, tmp_path: Path) -> None:
    cfg = StreamingConfig(batch_size=20, batch_wait_s=0.5)
    events = records(setup.later)
    bodies = [json.dumps(e).encode() for e in events]
    bodies.append(b"\x00 not json at all")  # poison: quarantined, acknowledged, never redelivered
    bodies.append(json.dumps(events[:3]).encode())  # a list body, all three already sent
    # NDJSON: two events already sent and a line that is not JSON (quarantined alone).
    bodies.append(
        b"\n".join([json.dumps(events[3]).encode(), b"{oops", json.dumps(events[4]).encode()])
    )
    with nats_server(tmp_path / "nats") as url:

        async def run() -> None:
            await _publish(url, cfg, bodies)
            stop = asyncio.Event()
            report = await consume(
                setup.tagger,
                cfg,
                url=url,
                subject=cfg.subject,
                stop=stop,
                max_messages=len(bodies),
            )
            assert report.messages == len(bodies)
            assert report.accepted == len(events)
            assert report.duplicates == 3 + 2
            assert report.by_reason == {ReasonCode.MALFORMED_ROW.value: 1 + 1}
            # Every message is acknowledged: nothing pending, nothing to redeliver.
            nc = await nats.connect(url)
            info = await nc.jetstream().consumer_info(cfg.stream, cfg.durable)
            await nc.close()
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
            assert info.delivered.stream_seq == len(bodies)

        asyncio.run(run())
    assert len(setup.live.load_events()) == len(events)
    with setup.tags.reader() as con:
        live = live_rows(con)
    assert set(live["customer_id"]) == set(setup.later["customer_id"])


def test_fetch_size_grows_with_the_backlog_and_shrinks_back() -> None:
    size = FetchSize(50, ceiling=400)
    assert size.current == 50
    size.observe(50)  # full: messages are waiting
    size.observe(100)
    size.observe(200)
    assert size.current == 400
    size.observe(400)
    assert size.current == 400  # never past the ceiling
    size.observe(300)  # more than half full: keep the size
    assert size.current == 400
    size.observe(3)  # the backlog is gone
    size.observe(1)
    size.observe(1)
    assert size.current == 50
    size.observe(1)
    assert size.current == 50  # never under the configured batch size


def test_a_body_is_an_event_a_list_or_ndjson() -> None:
    a = {"event_id": "a", "customer_id": "c1"}
    b = {"event_id": "b", "customer_id": "c2"}
    assert _records(json.dumps(a).encode()) == [a]
    assert _records(json.dumps([a, b]).encode()) == [a, b]
    # Pretty-printed JSON spans lines but is one value.
    assert _records(json.dumps([a, b], indent=2).encode()) == [a, b]
    ndjson = b"\n".join([json.dumps(a).encode(), b"", json.dumps([b]).encode(), b"not json"])
    assert _records(ndjson + b"\n") == [a, b, "not json"]
    assert _records(b"\x00 not json") == ["\x00 not json"]


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data


def test_buffered_messages_make_one_micro_batch_of_whole_messages() -> None:
    async def run() -> None:
        buffer = _Buffer()
        three = [{"event_id": f"e{i}", "customer_id": "c"} for i in range(3)]
        msgs = [_Msg(json.dumps(three).encode()) for _ in range(4)]
        buffer.put(msgs[:2])
        buffer.put(msgs[2:])
        assert (len(buffer.items), buffer.events) == (4, 12)
        assert buffer.arrived.is_set()
        # Everything that arrived while a micro-batch was tagged goes into the next one,
        # up to the event limit, never splitting a message (acks are per message).
        taken, records = buffer.take(limit=7)
        assert taken == msgs[:2]
        assert len(records) == 6
        assert buffer.events == 6
        assert buffer.arrived.is_set()
        taken, records = buffer.take(limit=2)  # one message over the limit: still taken whole
        assert taken == [msgs[2]]
        assert len(records) == 3
        taken, records = buffer.take()
        assert taken == [msgs[3]]
        assert buffer.events == 0
        assert not buffer.arrived.is_set()

    asyncio.run(run())
