"""Erasure of customers from the fact side: the register of erased ids and the scrubbing
of Parquet files and quarantine files.

The register (``data/erasures.json``) keeps a keyed hash of each erased id, never the
id itself: enough to refuse the id when it is imported again (quarantine reason
``erased``) and to erase it again from a store brought back by a restore, while nothing
in the project says who was erased. The hashing key is random and kept in the register.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import uuid
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.crypto import (
    EncryptionKeys,
    atomic_write,
    is_sealed,
    open_bytes,
    read_parquet,
    write_parquet,
)
from features.errors import StoreError

__all__ = ["ErasureRegister", "scrub_parquet", "scrub_quarantine"]


class ErasureRegister:
    """Keyed hashes of erased customer ids, in one JSON file written atomically.

    The file holds its own random key (created with the first erasure) beside the
    hashes, so the register stays usable whatever else a restore brings back.

    Args:
        path: The register file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> tuple[bytes, list[dict[str, str]]]:
        if not self.path.is_file():
            return b"", []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = [
                {"hash": str(e["hash"]), "erased_at": str(e["erased_at"])} for e in data["erased"]
            ]
            return bytes.fromhex(data["key"]), entries
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"Expected the erasure register {self.path} to hold JSON with 'key' and "
                f"'erased' (a list of {{hash, erased_at}}). Got an unreadable file: {exc}"
            ) from exc

    @staticmethod
    def _digest(key: bytes, customer_id: str) -> str:
        return hashlib.blake2b(
            str(customer_id).encode("utf-8"), key=key, digest_size=10
        ).hexdigest()

    def hash(self, customer_id: str) -> str:
        """The keyed hash recorded for ``customer_id`` (as in the audit log).

        Raises:
            StoreError: Nobody has been erased yet (there is no key).
        """
        key, _ = self._load()
        if not key:
            raise StoreError(f"Expected an erasure register at {self.path}. Got none yet.")
        return self._digest(key, customer_id)

    def entries(self) -> list[dict[str, str]]:
        """``{"hash", "erased_at"}`` of every erasure, oldest first."""
        return self._load()[1]

    def hashes(self) -> set[str]:
        """Hashes of every erased id."""
        return {e["hash"] for e in self.entries()}

    def add(self, customer_ids: Iterable[str], *, at: pd.Timestamp) -> list[str]:
        """Record ``customer_ids`` as erased at ``at``; returns their hashes."""
        key, entries = self._load()
        key = key or secrets.token_bytes(32)
        known = {e["hash"] for e in entries}
        hashes = [self._digest(key, c) for c in customer_ids]
        for h in hashes:
            if h not in known:
                entries.append({"hash": h, "erased_at": pd.Timestamp(at).isoformat()})
                known.add(h)
        self._write(key, entries)
        return hashes

    def _write(self, key: bytes, entries: list[dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(
                json.dumps({"format": 1, "key": key.hex(), "erased": entries}, indent=1),
                encoding="utf-8",
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def matcher(self) -> ErasedMatcher | None:
        """A callable marking erased ids in a column (None when nobody was erased)."""
        key, entries = self._load()
        return ErasedMatcher(key, {e["hash"] for e in entries}) if entries else None


class ErasedMatcher:
    """``matcher(ids) -> bool array``: which ids are erased (for import validation)."""

    def __init__(self, key: bytes, hashes: Collection[str]) -> None:
        self._key = key
        self._hashes = frozenset(hashes)

    def __call__(self, ids: pd.Series) -> np.ndarray:
        values = ids.astype("string").fillna("")
        cache: dict[str, bool] = {}
        out = np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values.tolist()):
            hit = cache.get(v)
            if hit is None:
                hit = cache[v] = bool(v) and ErasureRegister._digest(self._key, v) in self._hashes
            out[i] = hit
        return out


def scrub_parquet(
    path: Path, customer_ids: Collection[str], keys: EncryptionKeys | None = None
) -> int:
    """Rewrite ``path`` without the rows of ``customer_ids`` (atomically, schema metadata
    kept; a ``rows`` count in the ``tagsmith`` metadata is updated). Returns rows removed.
    """
    try:
        table = read_parquet(path, keys)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: expected a readable Parquet file. {exc}") from exc
    if "customer_id" not in table.column_names:
        return 0
    hit = pc.is_in(table["customer_id"], value_set=pa.array(list(customer_ids), pa.string()))
    removed = int(pc.sum(hit).as_py() or 0)
    if not removed:
        return 0
    kept = table.filter(pc.invert(hit))
    meta = dict(table.schema.metadata or {})
    if b"tagsmith" in meta:
        info = json.loads(meta[b"tagsmith"])
        if "rows" in info:
            info["rows"] = kept.num_rows
        meta[b"tagsmith"] = json.dumps(info).encode("utf-8")
    kept = kept.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write_parquet(kept, tmp, keys, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return removed


def scrub_quarantine(
    directory: Path, customer_ids: Collection[str], keys: EncryptionKeys | None = None
) -> int:
    """Drop quarantined rows whose original line holds one of ``customer_ids`` as a field.

    Quarantine files keep each rejected row's original text; an erased customer's rows
    go too. Returns rows removed.
    """
    if not directory.is_dir():
        return 0
    wanted = set(customer_ids)
    removed = 0
    for path in sorted(directory.glob("*.csv")):
        raw = path.read_bytes()
        frame = pd.read_csv(
            io.BytesIO(open_bytes(path, keys) if is_sealed(raw) else raw),
            dtype=str,
            keep_default_na=False,
        )
        if "original_line" not in frame.columns:
            continue
        hit = frame["original_line"].map(lambda line: _holds(line, wanted)).to_numpy(bool)
        if not hit.any():
            continue
        removed += int(hit.sum())
        text = frame[~hit].to_csv(index=False).encode("utf-8")
        # Stay as found: live quarantine files are appended to, so they are kept plain.
        atomic_write(path, keys.seal(text) if keys is not None and is_sealed(raw) else text)
    return removed


def _holds(line: str, wanted: set[str]) -> bool:
    for sep in (",", ";", "\t", "|"):
        try:
            fields = next(csv.reader(io.StringIO(line), delimiter=sep), [])
        except csv.Error:
            continue
        if any(f.strip() in wanted for f in fields):
            return True
    # Other layouts (JSON lines, Parquet rows rendered as text): the id as a whole word.
    return any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", line) for w in wanted)
