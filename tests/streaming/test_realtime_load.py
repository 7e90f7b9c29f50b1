"""The real-time benchmark's load accounting (``benchmarks/realtime_load.py``).

An open-loop step is only honest if an event is dated from when it was sent: the NATS
publisher sends a whole message when its first event is due, so every event of that
message is due then, as every event of an HTTP request is due with its request.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from benchmarks.realtime_load import logins, message_due_times
from benchmarks.realtime_server import OpenLoopTally, _open_loop, request_due_times


def test_every_event_of_a_message_is_due_when_the_message_is_sent() -> None:
    due = message_due_times(7, rate=2.0, per_message=3, start=100.0)

    # Messages start at events 0, 3 and 6: sent at 100 + 0/2, 100 + 3/2, 100 + 6/2.
    np.testing.assert_array_equal(due, [100.0, 100.0, 100.0, 101.5, 101.5, 101.5, 103.0])


def test_one_event_a_message_is_due_at_its_own_time() -> None:
    due = message_due_times(4, rate=50.0, per_message=1, start=0.0)

    np.testing.assert_allclose(due, [0.0, 0.02, 0.04, 0.06])


def test_no_event_is_due_after_its_message_was_sent() -> None:
    # 50 events/s in 100-event messages: the old rule dated the last event of a message
    # 1.98 s after the message left, so its latency came out ~2 s too small.
    rate, per_message, n = 50.0, 100, 1_000
    due = message_due_times(n, rate, per_message, start=0.0)
    own = np.arange(n) / rate

    assert np.all(due <= own)
    assert float((own - due).max()) == pytest.approx((per_message - 1) / rate)
    assert len(np.unique(due)) == n // per_message


def test_logins_are_new_events_of_the_given_customers() -> None:
    ids = np.array(["a", "b", "c"])
    first = logins(np.random.default_rng(1), ids, 50, "t")
    second = logins(np.random.default_rng(1), ids, 50, "t")

    assert len(first) == 50
    assert {e["customer_id"] for e in first} <= set(ids)
    assert {e["event_type"] for e in first} == {"login"}
    every_id = [e["event_id"] for e in first + second]
    assert len(set(every_id)) == 100  # a later batch never repeats an earlier one's ids
    assert all(i.startswith("t-") for i in every_id)


# -- the real-server client (benchmarks/realtime_server.py: OpenLoopTally, _open_loop) ----


def test_an_answered_request_times_each_of_its_events_from_when_it_was_due() -> None:
    tally = OpenLoopTally()
    tally.answered(due=10.0, done=10.25, events=3, accepted=3)
    tally.answered(due=11.0, done=12.5, events=1, accepted=0)  # a duplicate: answered

    assert tally.latencies == [0.25, 0.25, 0.25, 1.5]
    step = tally.summary(offered=4, events=4, elapsed=2.0)
    assert step["p50_ms"] == 250.0
    assert step["max_ms"] == 1500.0
    assert step["achieved_per_s"] == 1.5  # accepted events over the elapsed time
    assert step["not_done"] == 0


def test_refused_and_failed_events_are_counted_not_timed() -> None:
    tally = OpenLoopTally()
    tally.answered(due=0.0, done=0.1, events=2, accepted=2)
    tally.refusal(events=2)
    tally.failure(events=2, status="504")

    step = tally.summary(offered=10, events=8, elapsed=1.0)
    assert step["p99_ms"] == 100.0
    assert (step["refused"], step["failed"]) == (2, 2)
    # Refused events are done (they were answered 429); failed and never-sent ones are not.
    assert step["not_done"] == 4
    assert step["statuses"] == {"200": 1, "429": 1, "504": 1}


def test_an_empty_step_has_no_percentiles() -> None:
    step = OpenLoopTally().summary(offered=5, events=5, elapsed=0.0)

    assert (step["p50_ms"], step["p99_ms"], step["achieved_per_s"]) == (None, None, None)
    assert step["not_done"] == 5


def test_requests_are_due_one_request_worth_of_events_apart() -> None:
    due = request_due_times(4, rate=1000.0, size=100, start=5.0)

    np.testing.assert_allclose(due, [5.0, 5.1, 5.2, 5.3])


def test_the_client_posts_every_event_once_on_kept_alive_connections() -> None:
    # A tiny /events server: 200 with the accepted count, 429 for the third request.
    from aiohttp import web

    seen: list[dict[str, object]] = []
    peers: set[object] = set()

    async def events(request: web.Request) -> web.Response:
        body = await request.json()
        assert request.headers["X-API-Key"] == "k"
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        seen.extend(body["events"])
        if len(seen) == 3 * 5:
            return web.json_response({"error": "busy"}, status=429, headers={"Retry-After": "1"})
        return web.json_response({"accepted": len(body["events"])})

    async def main() -> dict[str, object]:
        app = web.Application()
        app.router.add_post("/events", events)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            spec = {
                "run": "t",
                "url": f"http://127.0.0.1:{port}",
                "key": "k",
                "rate": 200,
                "size": 5,
                "tag": "x",
                "customers": [f"c{i}" for i in range(40)],
                "connections": 2,
                "drain_s": 5.0,
            }
            return await _open_loop(spec)
        finally:
            await runner.cleanup()

    step = asyncio.run(main())

    assert step["requests"] == 8
    assert step["statuses"] == {"200": 7, "429": 1}
    assert (step["refused"], step["failed"], step["not_done"]) == (5, 0, 0)
    assert sorted(e["customer_id"] for e in seen) == sorted(f"c{i}" for i in range(40))
    assert len({e["event_id"] for e in seen}) == 40
    assert len(peers) <= 2  # at most `connections` connections, each reused
    assert isinstance(step["client_cpu_s_per_s"], float)
