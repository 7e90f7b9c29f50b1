"""Encryption at rest: AES-256-GCM sealed files and lines, keys with rotation.

A sealed blob is ``MAGIC | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag``; the
magic and key id are authenticated as associated data, so a blob cannot be moved to
another key or format unnoticed. :class:`EncryptionKeys` holds the current key (used
to seal) and older ones (still accepted to open, until ``tagsmith store rotate-key``
rewrote everything under the current key).

Files without the magic are read as plain (a project encrypted after the fact, or one
without a key); a sealed file read without keys fails with a message saying which key
it needs. Keys come from outside the project folder (an environment variable or a key
file named in ``tagsmith.yaml``); this module only parses them.

PyArrow is imported by the Parquet helpers only: the audit log, API keys and policy
seal lines and small files through this module, and commands that read only those
(``tagsmith audit show``) must not pay for the array libraries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from features.errors import StoreError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MAGIC",
    "EncryptionKeys",
    "atomic_write",
    "generate_key",
    "is_sealed",
    "open_bytes",
    "parquet_source",
    "read_parquet",
    "read_parquet_schema",
    "write_bytes",
    "write_parquet",
]

MAGIC = b"TGSENC1\x00"
_KID = 8
_NONCE = 12
_HEAD = len(MAGIC) + _KID + _NONCE


def generate_key() -> str:
    """A new random 256-bit key as text (URL-safe base64), for the key file or variable."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"tagsmith key id\x00" + key).digest()[:_KID]


class EncryptionKeys:
    """The current key and the older ones still accepted for reading.

    Args:
        keys: 32-byte keys, the current one first.
        source: Where they came from (named in messages, never the key).
    """

    def __init__(self, keys: Sequence[bytes], *, source: str = "the key") -> None:
        if not keys:
            raise StoreError("Expected at least one encryption key. Got none.")
        for key in keys:
            if len(key) != 32:
                raise StoreError(
                    f"Expected 256-bit (32-byte) encryption keys in {source}. "
                    f"Got a {len(key)}-byte key."
                )
        self.keys = list(keys)
        self.source = source
        self._by_id = {_key_id(k): k for k in self.keys}
        self._current = AESGCM(self.keys[0])

    @classmethod
    def from_text(cls, text: str, *, source: str) -> EncryptionKeys:
        """Keys from text: URL-safe base64 (or hex), separated by commas or lines, the
        current one first (``NEW,OLD`` while rotating).

        Raises:
            StoreError: A key is not base64/hex of 32 bytes (the message names ``source``).
        """
        parts = [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]
        keys = []
        for i, part in enumerate(parts, start=1):
            try:
                key = (
                    bytes.fromhex(part)
                    if len(part) == 64
                    else base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
                )
            except (ValueError, binascii.Error) as exc:
                raise StoreError(
                    f"Expected key {i} in {source} to be URL-safe base64 or hex of 32 bytes "
                    "(make one with 'tagsmith store new-key'). Got text that is neither."
                ) from exc
            keys.append(key)
        return cls(keys, source=source)

    @property
    def current_id(self) -> str:
        """Hex id of the current key (safe to show and log)."""
        return _key_id(self.keys[0]).hex()

    @property
    def ids(self) -> list[str]:
        """Hex ids of every key, current first."""
        return [_key_id(k).hex() for k in self.keys]

    def duckdb_key(self, index: int = 0) -> str:
        """The text key DuckDB's database encryption is given for key ``index`` (derived:
        the raw key itself is never handed over)."""
        return hashlib.sha256(b"tagsmith duckdb\x00" + self.keys[index]).hexdigest()

    def seal(self, data: bytes) -> bytes:
        """``data`` encrypted and authenticated under the current key."""
        nonce = os.urandom(_NONCE)
        kid = _key_id(self.keys[0])
        return MAGIC + kid + nonce + self._current.encrypt(nonce, data, MAGIC + kid)

    def open(self, blob: bytes, *, where: str = "data") -> bytes:
        """The plaintext of a sealed ``blob`` (plain input is returned unchanged).

        Raises:
            StoreError: The blob was sealed under a key not held here, or was altered.
        """
        if not is_sealed(blob):
            return blob
        kid = blob[len(MAGIC) : len(MAGIC) + _KID]
        key = self._by_id.get(kid)
        if key is None:
            raise StoreError(
                f"{where} is encrypted under key {kid.hex()}, which {self.source} does not "
                f"hold (it holds {', '.join(self.ids)}). Give that key (as an older key "
                "after the current one while rotating)."
            )
        nonce = blob[len(MAGIC) + _KID : _HEAD]
        try:
            return AESGCM(key).decrypt(nonce, blob[_HEAD:], MAGIC + kid)
        except InvalidTag as exc:
            raise StoreError(f"{where} failed its integrity check: altered or damaged.") from exc


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` starts like a sealed blob."""
    return blob[: len(MAGIC)] == MAGIC


def open_bytes(path: Path, keys: EncryptionKeys | None) -> bytes:
    """The plaintext of the file ``path`` (plain files as they are).

    Raises:
        StoreError: It is sealed and no keys are given, or the keys do not open it.
    """
    data = Path(path).read_bytes()
    if not is_sealed(data):
        return data
    if keys is None:
        kid = data[len(MAGIC) : len(MAGIC) + _KID].hex()
        raise StoreError(
            f"{path} is encrypted (key {kid}). Expected the project's encryption key: set "
            "TAGSMITH_ENCRYPTION_KEY or governance.encryption.key_file. Got no key."
        )
    return keys.open(data, where=str(path))


def write_bytes(path: Path, data: bytes, keys: EncryptionKeys | None) -> None:
    """Write ``data`` to ``path`` (sealed when ``keys`` are given); not atomic by itself."""
    Path(path).write_bytes(keys.seal(data) if keys is not None else data)


def write_parquet(
    table: pa.Table, path: Path | str, keys: EncryptionKeys | None, **options: Any
) -> None:
    """``pq.write_table`` to ``path``, the whole file sealed when ``keys`` are given."""
    import pyarrow.parquet as pq

    if keys is None:
        pq.write_table(table, path, **options)
        return
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    Path(path).write_bytes(keys.seal(buf.getvalue()))


def parquet_source(path: Path | str, keys: EncryptionKeys | None) -> Any:
    """What Parquet readers (pyarrow, pandas) take for ``path``: the path itself when
    plain, the decrypted bytes in memory when sealed."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(len(MAGIC))
    if head != MAGIC:
        return path
    return io.BytesIO(open_bytes(path, keys))


def read_parquet(
    path: Path | str,
    keys: EncryptionKeys | None,
    *,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pa.Table:
    """``pq.read_table`` of a plain or sealed Parquet file."""
    import pyarrow.parquet as pq

    return pq.read_table(
        parquet_source(path, keys),
        columns=list(columns) if columns is not None else None,
        filters=filters,
    )


def read_parquet_schema(path: Path | str, keys: EncryptionKeys | None) -> pa.Schema:
    """The Arrow schema (with metadata) of a plain or sealed Parquet file."""
    import pyarrow.parquet as pq

    return pq.read_schema(parquet_source(path, keys))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` next to ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
