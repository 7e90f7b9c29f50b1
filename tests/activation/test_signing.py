"""Signatures as a receiver checks them: HMAC-SHA256 of timestamp + body, fresh timestamps."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from activation.signing import sign, signature_headers, verify_signature

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"whsec-test"


def receiver_accepts(secret: bytes, headers: dict[str, str], body: bytes, now: float) -> bool:
    """What a receiver written from the README does, with nothing from Tagsmith."""
    stamp = headers["X-Tagsmith-Timestamp"]
    if abs(now - int(stamp)) > 300:
        return False
    mac = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Tagsmith-Signature"], "sha256=" + mac)


def test_a_receiver_verifies_the_signature_and_rejects_tampering_and_old_timestamps() -> None:
    body = b'{"events":[{"customer_id":"C1","change":"entered"}]}'
    now = time.time()
    headers = signature_headers(SECRET, body, now=now)
    assert receiver_accepts(SECRET, headers, body, now)
    assert verify_signature(SECRET, headers, body, now=now)
    tampered = body.replace(b"entered", b"left")
    assert not receiver_accepts(SECRET, headers, tampered, now)
    assert not verify_signature(SECRET, headers, tampered, now=now)
    assert not receiver_accepts(b"other-secret", headers, body, now)
    # Replayed ten minutes later: the signature still matches, the timestamp does not.
    assert not receiver_accepts(SECRET, headers, body, now + 600)
    assert not verify_signature(SECRET, headers, body, now=now + 600)
    # A new timestamp with the old signature is refused too (the timestamp is signed).
    forged = {**headers, "X-Tagsmith-Timestamp": str(int(now) + 1)}
    assert not receiver_accepts(SECRET, forged, body, now)
    assert not verify_signature(SECRET, {"X-Tagsmith-Signature": "sha256=00"}, body, now=now)


@given(body=st.binary(max_size=200), ts=st.integers(min_value=0, max_value=2**34))
def test_sign_matches_a_plain_hmac(body: bytes, ts: int) -> None:
    expected = hmac.new(SECRET, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, ts, body) == "sha256=" + expected


def test_the_readme_snippet_verifies_like_the_library() -> None:
    # The triggers section lives in the guide (the README links to it).
    text = "\n".join(
        (ROOT / name).read_text(encoding="utf-8")
        for name in ("README.md", "docs/guide.md")
        if (ROOT / name).is_file()
    )
    match = re.search(r"```python\n(# Verify a Tagsmith webhook.*?)```", text, re.S)
    assert match, "README/docs/guide.md: the signature verification snippet is missing"
    snippet = match.group(1)
    assert len(snippet.strip().splitlines()) <= 12
    scope: dict[str, object] = {}
    exec(snippet, scope)  # our own README, under test
    verify = scope["verify"]
    body = b'{"events":[]}'
    headers = signature_headers(SECRET, body)
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body + b" ")
    old = signature_headers(SECRET, body, now=time.time() - 3600)
    assert not verify(SECRET, old, body)
