"""Delivery under faults, against a real receiver on 127.0.0.1: nothing lost, keys stable.

The receiver answers 500, times out, drops connections, asks to retry later (429 with
``Retry-After``) and goes down for 30 s; after each scenario every expected
(customer, trigger, transition) has arrived at least once, and every duplicate carries
the idempotency key of its original.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.activation.conftest import World, trigger, webhook
from tests.activation.receiver import Receiver

# The outage length; the suite affords it (the test runs beside others).
DOWN_S = 30.0


def scenario(world: World, receiver: Receiver, n: int = 40, **dest: Any) -> set[str]:
    """n customers move active -> dormant; a trigger on entering 'dormant' is applied."""
    ids = [f"C{i:04d}" for i in range(n)]
    world.snapshot([(c, "lifecycle_stage", "active") for c in ids], "2024-01-31")
    world.define(
        {
            "destinations": [webhook("crm", receiver.url, **{"batch_size": 5, **dest})],
            "triggers": [
                trigger(
                    "winback",
                    destination="crm",
                    on_enter="lifecycle_stage = 'dormant'",
                    include=["lifecycle_stage"],
                )
            ],
        }
    )
    world.apply()
    world.snapshot([(c, "lifecycle_stage", "dormant") for c in ids], "2024-02-29")
    return set(ids)


def check_at_least_once_with_stable_keys(receiver: Receiver, expected: set[str]) -> int:
    """Every customer accepted; duplicates share keys. Returns the number of duplicates."""
    accepted = receiver.events(accepted_only=True)
    assert {e["customer_id"] for e in accepted} == expected
    keys: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for e in receiver.events():
        keys[(e["customer_id"], e["trigger"], e["change"])].add(e["id"])
    assert all(len(k) == 1 for k in keys.values()), "a duplicate came with another key"
    batch_keys: dict[str, set[str]] = defaultdict(set)
    for r in receiver.requests:
        batch_keys[r.headers["X-Tagsmith-Delivery"]].add(r.headers["Idempotency-Key"])
    assert all(len(k) == 1 for k in batch_keys.values())
    assert all(r.signature_ok for r in receiver.requests)
    return len(accepted) - len(expected)


def test_500s_timeouts_and_closed_connections_lose_nothing(
    world: World, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="activation")
    expected = scenario(world, receiver, max_attempts=10)
    receiver.faults = ["500", "500", "timeout", "close", "500", "close", "timeout", "429", "500"]
    report = world.dispatcher().run(until="drained", max_seconds=60)
    assert report.stopped == "drained"
    assert report.dead == 0
    assert report.delivered == len(expected)
    duplicates = check_at_least_once_with_stable_keys(receiver, expected)
    # The two timed-out requests were processed by the receiver, then sent again.
    assert duplicates == 10
    counts = {(r["state"]): r["n"] for r in world.outbox.counts()}
    assert counts == {"delivered": len(expected)}
    assert "retry in" in caplog.text
    assert "delivered (HTTP 200)" in caplog.text
    assert not any(c in caplog.text for c in expected), "customer ids in the log"
    assert receiver.url not in caplog.text


def test_retry_after_is_honoured(world: World, receiver: Receiver) -> None:
    scenario(world, receiver, n=5)
    receiver.faults = ["429"]
    receiver.retry_after = "2"
    world.dispatcher().run(until="drained", max_seconds=30)
    first, second = receiver.requests[:2]
    assert first.mode == "429"
    assert second.at - first.at >= 1.9  # backoff alone would be 0.025-0.05 s


def test_receiver_down_for_30_s_then_back(world: World, receiver: Receiver) -> None:
    expected = scenario(world, receiver, max_attempts=30, backoff_max_s=2.0)
    receiver.down()
    started = time.monotonic()
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            report=world.dispatcher().run(until="drained", max_seconds=DOWN_S + 30)
        )
    )
    thread.start()
    time.sleep(DOWN_S)
    receiver.up()  # same port
    thread.join(timeout=60)
    report = result["report"]
    assert report.stopped == "drained"
    assert time.monotonic() - started >= DOWN_S
    assert report.retries > 0
    assert report.dead == 0
    assert check_at_least_once_with_stable_keys(receiver, expected) == 0


def test_dead_letters_after_the_last_attempt_and_replay(world: World, receiver: Receiver) -> None:
    expected = scenario(world, receiver, n=10, max_attempts=3, batch_size=10)
    receiver.faults = ["500", "500", "500"]
    report = world.dispatcher().run(until="drained", max_seconds=30)
    assert report.dead == 10
    [dead] = world.outbox.batches(state="dead")
    assert dead["attempts"] == 3
    assert "HTTP 500" in dead["last_error"]
    assert "no attempts left" in dead["last_error"]
    assert receiver.events(accepted_only=True) == []
    assert world.outbox.replay(source="winback") == [dead["id"]]
    report = world.dispatcher().run(until="drained", max_seconds=30)
    assert report.delivered == 10
    assert check_at_least_once_with_stable_keys(receiver, expected) == 0
    actions = [e["action"] for e in world.activation.audit.entries()]
    assert actions.count("dead_letter") == 1
    assert actions.count("deliver") == 1
    log_text = world.activation.audit.path.read_text()
    assert not any(c in log_text for c in expected), "raw customer ids in the audit log"


def test_a_4xx_is_a_dead_letter_at_once(world: World, receiver: Receiver) -> None:
    scenario(world, receiver, n=5, max_attempts=5)
    receiver.faults = ["400"]
    report = world.dispatcher().run(until="drained", max_seconds=30)
    assert report.dead == 5
    [dead] = world.outbox.batches(state="dead")
    assert dead["attempts"] == 1
    assert "HTTP 400" in dead["last_error"]
    assert "not retried" in dead["last_error"]


def test_the_rate_limit_spaces_deliveries(world: World, receiver: Receiver) -> None:
    expected = scenario(world, receiver, n=60, rate_limit_per_s=20.0, concurrency=2)
    started = time.monotonic()
    world.dispatcher().run(until="drained", max_seconds=30)
    elapsed = time.monotonic() - started
    # A burst of 20, then 20 per second for the other 40.
    assert elapsed >= 1.8
    first = min(r.at for r in receiver.requests)
    in_first_second = sum(len(r.events) for r in receiver.requests if r.at - first < 1.0)
    assert in_first_second <= 20 + 20  # the burst, plus what refills within the second
    assert all(len(r.events) == 5 for r in receiver.requests)
    assert check_at_least_once_with_stable_keys(receiver, expected) == 0


def test_a_missing_secret_sends_nothing_unsigned(world: World, receiver: Receiver) -> None:
    scenario(world, receiver, n=5, max_attempts=2, secret_env="TAGSMITH_TEST_UNSET_SECRET")
    report = world.dispatcher().run(until="drained", max_seconds=10)
    assert receiver.requests == []
    assert report.dead == 5
    [batch] = world.outbox.batches(state="dead")
    assert "TAGSMITH_TEST_UNSET_SECRET is not set" in batch["last_error"]


@pytest.mark.parametrize("until", ["idle"])
def test_idle_stops_when_only_retries_in_the_future_remain(
    world: World, receiver: Receiver, until: str
) -> None:
    scenario(world, receiver, n=5, backoff_base_s=30.0, backoff_max_s=60.0)
    receiver.faults = ["500"]
    report = world.dispatcher().run(until=until, max_seconds=20)
    assert report.stopped == "idle"
    assert report.retries == 1
    assert world.outbox.open_count() == 5
