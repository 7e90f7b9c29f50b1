"""Webhook signatures: HMAC-SHA256 over the timestamp and the body.

Every signed request carries ``X-Tagsmith-Timestamp`` (Unix seconds, set per attempt)
and ``X-Tagsmith-Signature: sha256=<hex>``, the HMAC-SHA256 with the destination's
secret of ``<timestamp>.<body>`` (the timestamp's ASCII digits, a dot, the raw body
bytes). A receiver recomputes it, compares in constant time, and refuses timestamps
older than a few minutes, so a captured request cannot be replayed later and a body
cannot be changed without the secret. :func:`verify_signature` is what a Python
receiver runs; the README shows the same check in ten lines.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_S",
    "sign",
    "signature_headers",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Tagsmith-Signature"
TIMESTAMP_HEADER = "X-Tagsmith-Timestamp"
# How old (or how far in the future) a timestamp a receiver should accept, by default.
TOLERANCE_S = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of ``<timestamp>.<body>`` under ``secret``."""
    message = str(int(timestamp)).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_headers(secret: bytes, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two signature headers for one attempt (timestamp: ``now``, default the clock)."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify_signature(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``body`` was signed with ``secret`` less than ``tolerance_s`` ago.

    Args:
        secret: The shared secret.
        headers: The request's headers (any case).
        body: The raw request body, as received.
        tolerance_s: Oldest (and furthest in the future) timestamp accepted.
        now: The receiver's clock (default: ``time.time()``).
    """
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if stamp is None or given is None or not stamp.isdigit():
        return False
    clock = time.time() if now is None else now
    if abs(clock - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, sign(secret, int(stamp), body))
