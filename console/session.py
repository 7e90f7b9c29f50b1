"""Sign-in sessions, CSRF tokens and opaque customer references.

A session is a signed cookie (``itsdangerous``), HttpOnly and SameSite, holding the API
key's id, the name and role it was issued to, and the session's CSRF token; the key
itself is never stored. Every request re-reads the key store, so a revoked key (or a
changed role) ends its sessions at once.

Customer ids never appear in a URL (where access logs and browser history would keep
them): pages link to a customer through an authenticated encryption of the id
(AES-GCM under a key derived from the console secret), valid for this project only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "CustomerRefs",
    "Session",
    "SessionCodec",
    "same_token",
]

SESSION_COOKIE = "tagsmith_session"
LOGIN_COOKIE = "tagsmith_login"
_LOGIN_MAX_AGE_S = 3600


def _derive(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, so no two uses of the console secret share a key."""
    return hmac.new(secret, f"tagsmith-console/{purpose}".encode(), hashlib.sha256).digest()


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class Session:
    """A signed-in browser.

    Attributes:
        key_id: Public id of the API key used to sign in.
        name: The key's name (who; shown in the audit log).
        role: The role the key acted as at sign-in (re-checked on every request).
        csrf: The token every form of this session must carry.
        issued_at: Unix time of sign-in.
    """

    key_id: str
    name: str
    role: str
    csrf: str
    issued_at: int


class SessionCodec:
    """Signs and checks session and sign-in cookies.

    Args:
        secret: The console secret (32+ random bytes kept with the project's keys).
        max_age_s: Lifetime of a session.
    """

    def __init__(self, secret: bytes, *, max_age_s: int) -> None:
        if len(secret) < 16:
            raise ValueError(f"Expected a console secret of 16+ bytes. Got {len(secret)}.")
        key = _derive(secret, "cookies")
        self._sessions = URLSafeTimedSerializer(key, salt="session")
        self._logins = URLSafeTimedSerializer(key, salt="login")
        self.max_age_s = max_age_s

    def dump(self, session: Session) -> str:
        """Cookie value of ``session``."""
        return self._sessions.dumps(
            [session.key_id, session.name, session.role, session.csrf, session.issued_at]
        )

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value; ``None`` when absent, tampered with or expired."""
        if not value:
            return None
        try:
            data = self._sessions.loads(value, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not (isinstance(data, list) and len(data) == 5):
            return None
        key_id, name, role, csrf, issued = data
        if not all(isinstance(v, str) for v in (key_id, name, role, csrf)):
            return None
        return Session(key_id, name, role, csrf, int(issued))

    @staticmethod
    def new(key_id: str, name: str, role: str) -> Session:
        """A fresh session with a new CSRF token."""
        return Session(key_id, name, role, secrets.token_urlsafe(24), int(time.time()))

    def login_token(self) -> tuple[str, str]:
        """(cookie value, form token) protecting the sign-in form itself."""
        token = secrets.token_urlsafe(24)
        return self._logins.dumps(token), token

    def login_token_of(self, cookie: str | None) -> str:
        """The sign-in form token a sign-in cookie vouches for ('' when none is valid)."""
        if not cookie:
            return ""
        try:
            token = self._logins.loads(cookie, max_age=_LOGIN_MAX_AGE_S)
        except BadSignature:
            return ""
        return token if isinstance(token, str) else ""


class CustomerRefs:
    """Opaque, tamper-proof references to customers for URLs.

    Args:
        secret: The console secret.
    """

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(_derive(secret, "customer-refs"))

    def encode(self, customer_id: str) -> str:
        """A URL-safe reference to ``customer_id`` (random each time)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, customer_id.encode("utf-8"), b"customer")
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")

    def decode(self, ref: str) -> str | None:
        """The customer id of a reference; ``None`` when it was not made here or was altered."""
        if not ref or len(ref) > 600:
            return None
        try:
            raw = base64.urlsafe_b64decode(ref + "=" * (-len(ref) % 4))
            if len(raw) < 12 + 16:
                return None
            return self._aead.decrypt(raw[:12], raw[12:], b"customer").decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            return None
