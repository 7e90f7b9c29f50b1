"""Encryption at rest across the project: what is encrypted, and rewriting every store
under the current key (first encryption of a plain project, or key rotation).

The stores do the sealing themselves (``features.crypto``: fact store, live events and
feature snapshots as sealed Parquet files; ``tags.audit``: sealed lines; the tag store
through DuckDB's database encryption); this module walks them.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from features.crypto import MAGIC, EncryptionKeys, atomic_write, open_bytes
from tags.store_crypto import attach_encrypted
from tagsmith.project import Project

__all__ = ["EncryptionStatus", "encryption_status", "rewrite_under_current_key"]


@dataclass
class EncryptionStatus:
    """Per store: files sealed under the current key, under an older key, and plain."""

    key_id: str | None
    stores: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def plain_files(self) -> int:
        """Files still written in clear."""
        return sum(s["plain"] for s in self.stores.values())


def _sealed_files(project: Project) -> dict[str, list[Path]]:
    facts = project.facts_dir
    return {
        "fact store": [
            p for p in (facts / "customers.parquet", facts / "events.parquet") if p.is_file()
        ]
        + sorted(facts.glob("events-seg-*.parquet")),
        "live events": sorted((facts / "live").glob("*.parquet"))
        if (facts / "live").is_dir()
        else [],
        "feature snapshots": sorted(project.features_dir.glob("*.parquet"))
        if project.features_dir.is_dir()
        else [],
        # Live quarantine files (live-*.csv) are appended to by real-time tagging: plain.
        "quarantine files": sorted(
            p for p in project.quarantine_dir.glob("*.csv") if not p.name.startswith("live-")
        )
        if project.quarantine_dir.is_dir()
        else [],
    }


def _key_of(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(len(MAGIC) + 8)
    return head[len(MAGIC) :].hex() if head.startswith(MAGIC) else None


def _duckdb_encrypted(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.CatalogException:
        return True
    except duckdb.IOException:
        return True  # busy: a writer holds it; reported as not plain rather than guessed
    return False


def encryption_status(project: Project) -> EncryptionStatus:
    """What is encrypted now (reads file headers only; needs no key)."""
    keys = project.encryption_keys()
    current = keys.current_id if keys else None
    status = EncryptionStatus(key_id=current)
    for store, paths in _sealed_files(project).items():
        counts = {"current key": 0, "older key": 0, "plain": 0}
        for p in paths:
            kid = _key_of(p)
            which = "plain" if kid is None else "current key" if kid == current else "older key"
            counts[which] += 1
        status.stores[store] = counts
    log = project.audit_log_path
    if log.is_file():
        lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()]
        sealed = sum(ln.startswith("enc1:") for ln in lines)
        status.stores["audit log (lines)"] = {
            "sealed": sealed,
            "older key": 0,
            "plain": len(lines) - sealed,
        }
    if project.tag_store_path.is_file():
        enc = _duckdb_encrypted(project.tag_store_path)
        status.stores["tag store"] = {"encrypted": int(enc), "older key": 0, "plain": int(not enc)}
    return status


def _rewrite_tag_store(path: Path, keys: EncryptionKeys) -> None:
    """Copy the database into a new file encrypted under the current key, then swap."""
    fresh = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    con = attach_encrypted(path, keys, write=False, alias="old")
    try:
        con.execute("SET force_mbedtls_unsafe = 'true'")
        con.execute(f"ATTACH '{fresh.as_posix()}' AS new (ENCRYPTION_KEY '{keys.duckdb_key(0)}')")
        con.execute("COPY FROM DATABASE old TO new")
        con.execute("DETACH new")
    finally:
        con.close()
    try:
        os.replace(fresh, path)
    finally:
        fresh.unlink(missing_ok=True)
        fresh.with_name(fresh.name + ".wal").unlink(missing_ok=True)


def rewrite_under_current_key(project: Project) -> dict[str, int]:
    """Rewrite every store under the current key (older keys must still be given, after
    it, to open what they sealed). Returns files (or lines) rewritten per store.

    Raises:
        ConfigError: The project has no key configured.
    """
    from tagsmith.errors import ConfigError

    keys = project.encryption_keys()
    if keys is None:
        raise ConfigError(
            "Expected an encryption key (governance.encryption: $TAGSMITH_ENCRYPTION_KEY or "
            "key_file) to encrypt the stores with. Got none."
        )
    done: dict[str, int] = {}
    with project.fact_store().lock():
        for store, paths in _sealed_files(project).items():
            n = 0
            for p in paths:
                if _key_of(p) != keys.current_id:
                    atomic_write(p, keys.seal(open_bytes(p, keys)))
                    n += 1
            done[store] = n
    log = project.audit_log()
    if log.path.is_file():
        with log.lock():
            lines = log._lines()
            text = "".join(log._encode(line) + "\n" for line in lines)
            atomic_write(log.path, text.encode("utf-8"))
        done["audit log (lines)"] = len(lines)
    if project.tag_store_path.is_file():
        _rewrite_tag_store(project.tag_store_path, keys)
        done["tag store"] = 1
    return done
