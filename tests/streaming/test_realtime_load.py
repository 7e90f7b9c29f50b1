"""The real-time benchmark's load accounting (``benchmarks/realtime_load.py``).

An open-loop step is only honest if an event is dated from when it was sent: the NATS
publisher sends a whole message when its first event is due, so every event of that
message is due then, as every event of an HTTP request is due with its request.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.realtime_load import logins, message_due_times


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
