"""Backups of a project's stores, with a manifest of sha256 checksums.

A backup folder holds ``manifest.json`` and ``files/`` (each item at its path relative
to the project folder). DuckDB files are copied while a read-only connection holds
them (no tagging run can write meanwhile), SQLite files (the MLflow store) through
SQLite's online backup API, and the audit log under its lock. Restore verifies every
checksum first and refuses a damaged backup before touching the project; it then
swaps each item into place by rename, so an item is either the old or the restored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from features.crypto import EncryptionKeys, is_sealed
from features.errors import StoreError
from tags.audit import AuditLog
from tags.errors import BackupError
from tags.store_crypto import attach_encrypted

__all__ = ["MANIFEST", "BackupManifest", "create_backup", "restore_backup", "verify_backup"]

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds.

    Attributes:
        created_at: When it was taken (UTC, ISO 8601).
        items: Relative path of each backed-up item -> ``file``, ``dir`` or ``absent``
            (absent items are removed on restore, so the project matches the backup).
        files: Relative path of each file -> {"sha256", "size"}.
        meta: Free facts (tool version, project name).
        sealed: Files the backup encrypted (restore needs the key to open them).
    """

    created_at: str
    items: dict[str, str]
    files: dict[str, dict[str, Any]]
    meta: dict[str, Any]
    sealed: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(int(f["size"]) for f in self.files.values())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rel(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as exc:
        raise BackupError(
            f"Expected every store inside the project folder {root}. Got {path} outside it."
        ) from exc


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for sub in sorted(path.rglob("*")):
        if sub.is_file() and not sub.name.endswith((".lock", ".tmp")):
            yield sub


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".db" and _is_sqlite(src):
        with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as s, sqlite3.connect(dst) as d:
            s.backup(d)
        return
    shutil.copy2(src, dst)


def _hold(
    path: Path, audit_logs: Sequence[Path], keys: EncryptionKeys | None = None
) -> AbstractContextManager[Any]:
    """Keep writers out while ``path`` is copied."""
    if path.suffix == ".duckdb" and path.is_file():
        try:
            if keys is not None:
                return _closing(attach_encrypted(path, keys, write=False))
            return _closing(duckdb.connect(str(path), read_only=True))
        except duckdb.CatalogException as exc:
            raise BackupError(
                f"{path} is encrypted: the backup needs the project's encryption key. {exc}"
            ) from exc
        except duckdb.IOException as exc:
            raise BackupError(
                f"The tag store {path} is being written (a tagging run?). Try the backup "
                "again when it has finished."
            ) from exc
    if path in audit_logs:
        return AuditLog(path).lock()
    return nullcontext()


class _closing(AbstractContextManager[Any]):
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __exit__(self, *exc: object) -> None:
        self.con.close()


def create_backup(
    root: Path,
    items: Sequence[Path],
    dest: Path,
    *,
    audit_logs: Sequence[Path] = (),
    meta: Mapping[str, Any] | None = None,
    keys: EncryptionKeys | None = None,
) -> BackupManifest:
    """Copy ``items`` (files or folders inside ``root``) into ``dest`` with a manifest.

    Args:
        root: The project folder; paths in the backup are relative to it.
        items: Files and folders to back up; missing ones are recorded as absent.
            Inside folders, DuckDB files are held read-only while copied, SQLite files
            go through SQLite's backup API and audit logs are copied under their lock.
        dest: The backup folder (must be empty or not exist).
        audit_logs: Audit log files among ``items`` (copied under their lock, with
            their ``.head`` sidecar).
        meta: Free facts stored in the manifest.
        keys: Encryption keys: every file not sealed already is sealed in the backup
            (listed in the manifest's ``sealed``), so the backup is unreadable without them.

    Raises:
        BackupError: ``dest`` is not empty, or an item lies outside ``root``, or a
            store is being written.
    """
    root = Path(root).resolve()
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"Expected an empty or new backup folder. Got {dest}, which holds files.")
    if dest == root or root in dest.parents:
        raise BackupError(f"Expected a backup folder outside the project {root}. Got {dest}.")
    logs = [Path(p).resolve() for p in audit_logs]
    kinds: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    sealed: list[str] = []
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for item in items:
            item = Path(item).resolve()
            rel = _rel(root, item)
            if not item.exists():
                kinds[rel] = "absent"
                continue
            kinds[rel] = "dir" if item.is_dir() else "file"
            sources = list(_walk(item))
            heads = {AuditLog(log).head_path for log in logs}
            if item in logs:
                sources += [h for h in heads if h.exists() and h.parent == item.parent]
            for src in sources:
                if src in heads:
                    continue  # copied with its log, under the log's lock
                with _hold(src, logs, keys):
                    group = [src]
                    head = AuditLog(src).head_path
                    if src in logs and head.exists():
                        group.append(head)
                    for one in group:
                        _copy_file(one, tmp / "files" / _rel(root, one))
                for one in group:
                    copied = tmp / "files" / _rel(root, one)
                    if keys is not None and copied.exists():
                        data = copied.read_bytes()
                        if not is_sealed(data):
                            copied.write_bytes(keys.seal(data))
                            sealed.append(_rel(root, one))
            for src in sources:
                srel = _rel(root, src)
                copied = tmp / "files" / srel
                if copied.exists():
                    files[srel] = {"sha256": _sha256(copied), "size": copied.stat().st_size}
        manifest = BackupManifest(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            items=kinds,
            files=files,
            meta={**dict(meta or {}), **({"key_id": keys.current_id} if keys else {})},
            sealed=sorted(sealed),
        )
        (tmp / MANIFEST).write_text(
            json.dumps({"format": FORMAT, **manifest.__dict__}, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def verify_backup(src: Path) -> BackupManifest:
    """Read a backup's manifest and check every file's size and sha256.

    Raises:
        BackupError: The manifest is missing or unreadable, or a file is missing,
            unexpected, or differs from its checksum (the message names it).
    """
    src = Path(src)
    try:
        data = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        manifest = BackupManifest(
            created_at=str(data["created_at"]),
            items=dict(data["items"]),
            files=dict(data["files"]),
            meta=dict(data.get("meta", {})),
            sealed=list(data.get("sealed", [])),
        )
    except FileNotFoundError as exc:
        raise BackupError(f"Expected a backup folder with {MANIFEST}. Got none in {src}.") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{src / MANIFEST} is not a valid backup manifest: {exc}") from exc
    if data.get("format") != FORMAT:
        raise BackupError(
            f"Expected backup format {FORMAT}. Got {data.get('format')!r} in {src / MANIFEST}."
        )
    base = src / "files"
    present = {p.relative_to(base).as_posix() for p in _walk(base)} if base.exists() else set()
    problems = []
    for rel, info in sorted(manifest.files.items()):
        path = base / rel
        if rel not in present:
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != int(info["size"]) or _sha256(path) != info["sha256"]:
            problems.append(f"{rel}: checksum mismatch (changed since the backup)")
    problems += [f"{rel}: not in the manifest" for rel in sorted(present - set(manifest.files))]
    if problems:
        raise BackupError(
            f"Backup {src} fails its manifest check; nothing was restored:\n  "
            + "\n  ".join(problems)
        )
    return manifest


def restore_backup(
    src: Path, root: Path, *, apply: bool = True, keys: EncryptionKeys | None = None
) -> BackupManifest:
    """Put a verified backup back into the project ``root``.

    Every checksum is verified before anything is touched. Each item is copied into a
    staging folder inside ``root``, then swapped into place by rename; items recorded
    as absent are removed.

    Args:
        src: The backup folder.
        root: The project folder.
        apply: False to verify only (a preview).
        keys: Encryption keys, needed when the backup is encrypted.

    Raises:
        BackupError: The backup fails verification, or it is encrypted and ``keys``
            do not open it.
    """
    manifest = verify_backup(src)
    if manifest.sealed:
        key_id = manifest.meta.get("key_id", "?")
        if keys is None:
            raise BackupError(
                f"Backup {src} is encrypted (key {key_id}). Expected the project's encryption "
                "key (TAGSMITH_ENCRYPTION_KEY or governance.encryption.key_file). Got no key; "
                "nothing was restored."
            )
        probe = Path(src) / "files" / manifest.sealed[0]
        try:
            keys.open(probe.read_bytes(), where=str(probe))
        except StoreError as exc:
            raise BackupError(f"{exc} Nothing was restored.") from exc
    if not apply:
        return manifest
    root = Path(root).resolve()
    stage = root / f".tagsmith-restore-{uuid.uuid4().hex[:8]}"
    trash = stage / "previous"
    try:
        for rel, kind in manifest.items.items():
            if kind == "absent":
                continue
            for frel in manifest.files:
                if frel == rel or frel.startswith(rel + "/") or _is_sidecar(frel, rel, kind):
                    dst = stage / "new" / frel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(src) / "files" / frel, dst)
                    if frel in manifest.sealed and keys is not None:
                        dst.write_bytes(keys.open(dst.read_bytes(), where=str(dst)))
            if kind == "dir":
                (stage / "new" / rel).mkdir(parents=True, exist_ok=True)
        moved: list[tuple[Path, Path]] = []
        try:
            for rel, kind in manifest.items.items():
                sidecars = [f for f in manifest.files if _is_sidecar(f, rel, kind)]
                for path in [root / rel, *(root / s for s in sidecars)]:
                    if path.exists():
                        aside = trash / path.relative_to(root)
                        aside.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(path, aside)
                        moved.append((aside, path))
                if kind == "absent":
                    continue
                for rel_new in [rel, *sidecars]:
                    target = root / rel_new
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(stage / "new" / rel_new, target)
        except BaseException:
            # Put back what was moved aside so a failed restore leaves the project as it was.
            for aside, path in reversed(moved):
                if path.exists():
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                os.replace(aside, path)
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _is_sidecar(frel: str, rel: str, kind: str) -> bool:
    """True for a file stored next to a file item (the audit log's ``.head``)."""
    return kind == "file" and frel != rel and frel == rel + ".head"
