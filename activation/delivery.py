"""Sending one batch to a webhook, and what to do next: delivered, retry later, or dead.

Like a payments webhook: each attempt POSTs the batch's stored body with its
``Idempotency-Key`` and a fresh HMAC signature. 2xx is delivered. Timeouts, refused or
dropped connections, 408, 425, 429 and 5xx are retried with exponential backoff and
jitter (a ``Retry-After`` longer than the backoff is honoured, up to a bound); any other
status (a 4xx: the receiver refuses this request as such) is a dead letter at once, as
is a batch that used its last attempt. Errors never quote the URL, the body or the
response (they may hold customer ids or tokens), only the status and the error class.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from activation.definitions import WebhookDestination
from activation.outbox import Claimed
from activation.signing import signature_headers

__all__ = [
    "Outcome",
    "TokenBucket",
    "WebhookSender",
    "backoff_delay",
    "classify_status",
    "parse_retry_after",
]

USER_AGENT = "tagsmith-activation/1"
_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt.

    Attributes:
        outcome: ``delivered``, ``retry`` or ``dead``.
        status: HTTP status (None: no response).
        error: What went wrong (no URL, body or customer id in it).
        duration_ms: Time the attempt took.
        next_attempt_at: When to try again (``retry`` only; Unix time).
    """

    outcome: str
    status: int | None
    error: str | None
    duration_ms: float
    next_attempt_at: float | None = None


def classify_status(status: int) -> str:
    """``delivered`` (2xx), ``retry`` (408, 425, 429, 5xx) or ``dead`` (anything else)."""
    if 200 <= status < 300:
        return "delivered"
    if status in _RETRY_STATUSES or status >= 500:
        return "retry"
    return "dead"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before attempt ``attempt + 1``: base x 2^(attempt-1), capped, with jitter.

    Jitter draws from the upper half of the interval, so delays still grow while
    senders that failed together spread out.
    """
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return rng.uniform(ceiling / 2, ceiling)


class TokenBucket:
    """A per-destination rate limit in events per second (thread-safe).

    Args:
        rate: Events per second.
        capacity: Burst size (default: one second's worth, at least 1).
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> int:
        """Whole events that may be sent now."""
        with self._lock:
            self._refill()
            return max(0, int(self._tokens))

    def take(self, n: int) -> None:
        """Spend ``n`` events (may go negative by one batch; later sends then wait)."""
        with self._lock:
            self._refill()
            self._tokens -= n

    def wait_s(self, n: int = 1) -> float:
        """Seconds until ``n`` events (at most the capacity) may be sent."""
        with self._lock:
            self._refill()
            need = min(float(n), self.capacity) - self._tokens
            return max(0.0, need / self.rate)


class WebhookSender:
    """Sends batches to one webhook destination over a pooled HTTP client.

    Args:
        destination: Its settings.
        environ: Where the secret is looked up (default: ``os.environ``, read per attempt
            so a fixed secret takes effect without a restart).
        rng: Randomness of the jitter (tests seed it).
        transport: An httpx transport (tests only; default: real sockets).
    """

    def __init__(
        self,
        destination: WebhookDestination,
        *,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.destination = destination
        self._environ = environ if environ is not None else os.environ
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._rng_lock = threading.Lock()
        limits = httpx.Limits(
            max_connections=destination.concurrency,
            max_keepalive_connections=destination.concurrency,
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(destination.timeout_s),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _retry_at(self, attempt: int, retry_after_s: float | None, now: float) -> float:
        dest = self.destination
        with self._rng_lock:
            delay = backoff_delay(
                attempt, base_s=dest.backoff_base_s, max_s=dest.backoff_max_s, rng=self._rng
            )
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, dest.retry_after_max_s))
        return now + delay

    def _failed(
        self,
        claimed: Claimed,
        error: str,
        status: int | None,
        started: float,
        retry_after: float | None = None,
    ) -> Outcome:
        now = time.time()
        ms = (time.perf_counter() - started) * 1000
        if claimed.attempt >= self.destination.max_attempts:
            return Outcome(
                "dead",
                status,
                f"{error} (attempt {claimed.attempt} of "
                f"{self.destination.max_attempts}: no attempts left)",
                ms,
            )
        return Outcome(
            "retry", status, error, ms, self._retry_at(claimed.attempt, retry_after, now)
        )

    def send(self, claimed: Claimed) -> Outcome:
        """One attempt at ``claimed``; never raises for network or HTTP failures."""
        dest = self.destination
        started = time.perf_counter()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": claimed.key,
            "X-Tagsmith-Delivery": str(claimed.id),
            "X-Tagsmith-Attempt": str(claimed.attempt),
        }
        if dest.secret_env is not None:
            secret = self._environ.get(dest.secret_env)
            if not secret:
                return self._failed(
                    claimed,
                    f"environment variable {dest.secret_env} is not set: cannot sign, not sent",
                    None,
                    started,
                )
            headers.update(signature_headers(secret.encode("utf-8"), claimed.body))
        try:
            response = self._client.post(dest.url, content=claimed.body, headers=headers)
        except httpx.TimeoutException as exc:
            return self._failed(
                claimed,
                f"timed out after {dest.timeout_s:g} s ({type(exc).__name__})",
                None,
                started,
            )
        except httpx.TransportError as exc:
            return self._failed(claimed, f"connection failed ({type(exc).__name__})", None, started)
        status = response.status_code
        verdict = classify_status(status)
        ms = (time.perf_counter() - started) * 1000
        if verdict == "delivered":
            return Outcome("delivered", status, None, ms)
        label = f"HTTP {status} {response.reason_phrase}".strip()
        if verdict == "dead":
            return Outcome("dead", status, f"{label}: refused by the receiver (not retried)", ms)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
        return self._failed(claimed, label, status, started, retry_after)
