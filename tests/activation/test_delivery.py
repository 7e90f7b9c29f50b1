"""Retry policy pieces: status classes, Retry-After, backoff with jitter, the rate limit."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activation.delivery import TokenBucket, backoff_delay, classify_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (408, "retry"),
        (425, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "dead"),
        (401, "dead"),
        (404, "dead"),
        (410, "dead"),
        (301, "dead"),
    ],
)
def test_status_classes(status: int, verdict: str) -> None:
    assert classify_status(status) == verdict


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("7", now=0.0) == 7.0
    assert parse_retry_after(None, now=0.0) is None
    assert parse_retry_after("soon", now=0.0) is None
    when = email.utils.formatdate(1_000_120.0, usegmt=True)
    assert parse_retry_after(when, now=1_000_000.0) == pytest.approx(120.0)
    assert parse_retry_after(when, now=2_000_000.0) == 0.0


@given(
    attempt=st.integers(1, 40),
    base=st.floats(0.01, 10),
    cap=st.floats(0.01, 600),
    seed=st.integers(),
)
def test_backoff_grows_exponentially_within_jitter_and_the_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    ceiling = min(cap, base * 2 ** (attempt - 1))
    delay = backoff_delay(attempt, base_s=base, max_s=cap, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_token_bucket_limits_events_per_second() -> None:
    now = [0.0]
    bucket = TokenBucket(10.0, capacity=10.0, clock=lambda: now[0])
    assert bucket.available() == 10
    bucket.take(10)
    assert bucket.available() == 0
    assert bucket.wait_s(5) == pytest.approx(0.5)
    now[0] = 0.3
    assert bucket.available() == 3
    bucket.take(13)  # a batch larger than the allowance: later sends wait for it
    now[0] = 1.0
    assert bucket.available() == 0
    now[0] = 2.0
    assert bucket.available() == 7
    now[0] = 9.0
    assert bucket.available() == 10  # never more than the burst capacity
