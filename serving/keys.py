"""API keys of the tag service: stored salted and hashed, each mapped to a policy role.

A key reads ``tsk_<key id>_<secret>``. The key id finds the record; the secret is
checked against ``sha256(salt || secret)`` in constant time. Keys are 256-bit random
tokens, so a fast hash is the right tool (slow password hashes protect low-entropy
secrets and would cost milliseconds per request). The clear key is shown once, when
it is created, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.errors import ServingError

__all__ = ["ApiKey", "ApiKeyStore"]

_KEY_RE = re.compile(r"^tsk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the clear secret).

    Attributes:
        key_id: Public identifier, the middle part of the key.
        name: Who the key is for (a service or person); shown in the audit log.
        role: Access-policy role the key acts as.
        created_at: ISO timestamp of creation.
    """

    key_id: str
    name: str
    role: str
    created_at: str


@dataclass(frozen=True)
class _Record:
    key: ApiKey
    salt: bytes
    digest: bytes


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("utf-8")).digest()


class ApiKeyStore:
    """The project's API keys, in one JSON file written atomically.

    The file also holds a random per-project pepper used to hash customer ids in the
    audit log, so an auditor with the project can find who read a given customer while
    the log itself holds no raw ids.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, _Record] = {}
        self._pepper = b""
        self._stamp: tuple[int, int, int] | None = None
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._pepper, self._stamp = {}, b"", None
            return
        # Writes replace the file (new inode), so this changes on every write.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            records = {
                item["key_id"]: _Record(
                    key=ApiKey(
                        key_id=item["key_id"],
                        name=item["name"],
                        role=item["role"],
                        created_at=item["created_at"],
                    ),
                    salt=bytes.fromhex(item["salt"]),
                    digest=bytes.fromhex(item["sha256"]),
                )
                for item in data.get("keys", [])
            }
            pepper = bytes.fromhex(data["pepper"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ServingError(
                f"Expected the API key file {self.path} to hold JSON with 'pepper' and 'keys' "
                f"(key_id, name, role, created_at, salt, sha256). Got an unreadable file: {exc}"
            ) from exc
        self._records, self._pepper, self._stamp = records, pepper, stamp

    def _write(self, records: dict[str, _Record], pepper: bytes) -> None:
        data: dict[str, Any] = {
            "pepper": pepper.hex(),
            "keys": [
                {
                    "key_id": r.key.key_id,
                    "name": r.key.name,
                    "role": r.key.role,
                    "created_at": r.key.created_at,
                    "salt": r.salt.hex(),
                    "sha256": r.digest.hex(),
                }
                for r in records.values()
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None
        self._reload()

    @property
    def pepper(self) -> bytes:
        """Per-project secret for hashing customer ids in the audit log (created on demand)."""
        self._reload()
        if not self._pepper:
            self._write(self._records, secrets.token_bytes(32))
        return self._pepper

    def list_keys(self) -> list[ApiKey]:
        """Every stored key, oldest first."""
        self._reload()
        return [r.key for r in self._records.values()]

    def add(self, name: str, role: str) -> str:
        """Create a key for ``name`` acting as ``role``; return the clear key (shown once).

        Raises:
            ServingError: The name is not a short identifier, or is already used.
        """
        if not _NAME_RE.match(name):
            raise ServingError(
                "Expected a key name of 1-64 letters, digits, '_', '.' or '-'. "
                f"Got {name!r} instead."
            )
        self._reload()
        if any(r.key.name == name for r in self._records.values()):
            raise ServingError(
                f"Expected a new key name. Got {name!r}, which {self.path} already has: "
                "revoke it first or pick another name."
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = _Record(
            key=ApiKey(
                key_id=key_id,
                name=name,
                role=role,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            ),
            salt=salt,
            digest=_digest(salt, secret),
        )
        self._write({**self._records, key_id: record}, self._pepper or secrets.token_bytes(32))
        return f"tsk_{key_id}_{secret}"

    def revoke(self, name: str) -> None:
        """Delete the key called ``name``.

        Raises:
            ServingError: No key has that name.
        """
        self._reload()
        kept = {k: r for k, r in self._records.items() if r.key.name != name}
        if len(kept) == len(self._records):
            raise ServingError(
                f"Expected the name of a stored key {[r.key.name for r in self._records.values()]}."
                f" Got {name!r} instead."
            )
        self._write(kept, self._pepper or secrets.token_bytes(32))

    def verify(self, presented: str | None) -> ApiKey | None:
        """The key record matching ``presented``, or ``None`` when nothing matches.

        Re-reads the file when it changed, so keys added or revoked while the service
        runs take effect at once.
        """
        if not presented:
            return None
        match = _KEY_RE.match(presented.strip())
        if match is None:
            return None
        self._reload()
        record = self._records.get(match.group(1))
        if record is None:
            return None
        if not hmac.compare_digest(record.digest, _digest(record.salt, match.group(2))):
            return None
        return record.key
