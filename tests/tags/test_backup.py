from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tags.audit import AuditLog
from tags.backup import create_backup, restore_backup, verify_backup
from tags.errors import BackupError
from tags.store import TagStore
from tests.tags.conftest import FEB, JAN, long_table


def _tree(root: Path) -> dict[str, str]:
    # SQLite files are copied through SQLite's backup API: same rows, other bytes, so
    # they are compared by content below rather than here.
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith((".lock", ".db"))
    }


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, list[Path], Path]:
    root = tmp_path / "proj"
    data = root / "data"
    (data / "facts").mkdir(parents=True)
    (data / "facts" / "events.parquet").write_bytes(b"PAR1 pretend events")
    (root / "catalogue").mkdir()
    (root / "catalogue" / "rfm.yaml").write_text("id: rfm_segment\n")
    (root / "policy.yaml").write_text("roles: {}\n")
    TagStore(data / "tags.duckdb").write_snapshot(long_table(JAN, "2024-01-31"), as_of="2024-01-31")
    log = AuditLog(data / "audit.log")
    log.append(actor="a", role="admin", action="run")
    (data / "mlflow").mkdir()
    with sqlite3.connect(data / "mlflow" / "mlflow.db") as con:
        con.execute("CREATE TABLE t (x INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
    items = [
        data / "tags.duckdb",
        data / "facts",
        data / "features",
        root / "catalogue",
        root / "policy.yaml",
        data / "audit.log",
        data / "mlflow",
    ]
    return root, items, data / "audit.log"


def test_round_trip_restores_every_file(
    project: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    root, items, audit = project
    before = _tree(root)
    manifest = create_backup(root, items, tmp_path / "bk", audit_logs=[audit], meta={"v": "1"})
    assert manifest.items["data/features"] == "absent"
    assert "data/audit.log.head" in manifest.files
    # Change everything after the backup.
    TagStore(root / "data" / "tags.duckdb").write_snapshot(
        long_table(FEB, "2024-02-29"), as_of="2024-02-29"
    )
    AuditLog(audit).append(actor="b", role="admin", action="read")
    (root / "policy.yaml").write_text("roles: {changed: {}}\n")
    (root / "catalogue" / "rfm.yaml").unlink()
    (root / "catalogue" / "new.yaml").write_text("id: new\n")
    (root / "data" / "features").mkdir()
    (root / "data" / "features" / "x.parquet").write_bytes(b"later")
    assert _tree(root) != before

    restore_backup(tmp_path / "bk", root)

    assert _tree(root) == before
    store = TagStore(root / "data" / "tags.duckdb")
    assert [d.strftime("%Y-%m-%d") for d in store.snapshot_dates()] == ["2024-01-31"]
    assert AuditLog(audit).verify().ok
    with sqlite3.connect(root / "data" / "mlflow" / "mlflow.db") as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert not any(p.name.startswith(".tagsmith-restore") for p in root.iterdir())


def test_tampered_backup_is_refused_and_project_untouched(
    project: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    root, items, audit = project
    create_backup(root, items, tmp_path / "bk", audit_logs=[audit])
    (root / "policy.yaml").write_text("roles: {now: {}}\n")
    current = _tree(root)
    (tmp_path / "bk" / "files" / "catalogue" / "rfm.yaml").write_text("id: evil\n")
    with pytest.raises(BackupError, match=r"catalogue/rfm.yaml: checksum mismatch"):
        restore_backup(tmp_path / "bk", root)
    (tmp_path / "bk" / "files" / "policy.yaml").unlink()
    with pytest.raises(BackupError, match=r"policy.yaml: missing"):
        verify_backup(tmp_path / "bk")
    assert _tree(root) == current


def test_backup_refuses_non_empty_folder_and_outside_items(
    project: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    root, items, _ = project
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BackupError, match="holds files"):
        create_backup(root, items, tmp_path / "full")
    with pytest.raises(BackupError, match="outside"):
        create_backup(root, [tmp_path / "elsewhere.txt"], tmp_path / "bk2")
    manifest = json.loads(
        (
            create_backup(root, items, tmp_path / "bk3") and (tmp_path / "bk3" / "manifest.json")
        ).read_text()
    )
    assert manifest["format"] == 1
