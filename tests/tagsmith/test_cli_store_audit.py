from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tags.audit import AuditLog
from tags.store import TagStore
from tagsmith.cli import main
from tagsmith.project import Project
from tagsmith.userdirs import audit_key
from tests.tags.conftest import FEB, JAN, long_table


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    store = TagStore(root / "data" / "tags.duckdb")
    store.write_snapshot(long_table(JAN, "2024-01-31"), as_of="2024-01-31")
    return root


def run(root: Path, *args: str, role: str | None = "admin"):
    argv = ["--project", str(root), *args]
    if role:
        argv += ["--role", role]
    return CliRunner().invoke(main, argv, env={"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": None})


def test_init_writes_the_default_policy(project: Path) -> None:
    text = (project / "policy.yaml").read_text()
    assert "executive:" in text
    assert "restricted" in text


def test_backup_restore_round_trip_via_cli(project: Path, tmp_path: Path) -> None:
    result = run(project, "store", "backup", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert "backup written" in result.output
    TagStore(project / "data" / "tags.duckdb").write_snapshot(
        long_table(FEB, "2024-02-29"), as_of="2024-02-29"
    )
    preview = run(project, "store", "restore", str(tmp_path / "bk"))
    assert preview.exit_code == 0, preview.output
    assert "re-run with --yes" in preview.output
    assert len(TagStore(project / "data" / "tags.duckdb").snapshot_dates()) == 2
    done = run(project, "store", "restore", str(tmp_path / "bk"), "--yes")
    assert done.exit_code == 0, done.output
    assert len(TagStore(project / "data" / "tags.duckdb").snapshot_dates()) == 1
    actions = [e["action"] for e in AuditLog(project / "data" / "audit.log").entries()]
    assert actions == ["restore"]  # the log as backed up, plus the restore
    (archived,) = (project / "data" / "audit-archive").glob("*.log")
    assert [e["action"] for e in AuditLog(archived).entries()] == ["backup"]
    # The project's chain is keyed with the key kept outside the project.
    assert AuditLog(archived, key=audit_key()).verify().ok


def test_backup_needs_a_role_that_may(project: Path, tmp_path: Path) -> None:
    result = run(project, "store", "backup", str(tmp_path / "bk"), role="marketing")
    assert result.exit_code == 2
    assert "'marketing' may not backup" in result.output
    assert not (tmp_path / "bk").exists()
    (entry,) = AuditLog(project / "data" / "audit.log").entries()
    assert entry["action"] == "denied"
    assert entry["role"] == "marketing"


def test_audit_verify_and_show(project: Path) -> None:
    log = Project.load(project).audit_log()  # keyed, as every project writer
    for i in range(3):
        log.append(
            actor="ana", role="marketing", action="export", tags=["lifecycle"], query=f"q{i}"
        )
    ok = run(project, "audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "intact: 3 entries" in ok.output
    shown = run(project, "audit", "show", "--json")
    assert shown.exit_code == 0
    assert shown.output.count('"action": "export"') == 3
    lines = log.path.read_text().splitlines()
    lines[1] = lines[1].replace('"q1"', '"q9"')
    log.path.write_text("\n".join(lines) + "\n")
    bad = run(project, "audit", "verify")
    assert bad.exit_code == 1
    assert "line 2: content does not match its hash" in bad.output
