"""Hostile finding 14-8: the audit chain could be rewritten, or deleted, and verify "intact".

The chain was unkeyed sha256 with its head beside it: a short script dropped entries,
re-hashed the rest, rewrote the head and ``audit verify`` said intact; deleting the log
and its head verified as "intact: 0 entries". The project's chain is now HMAC-keyed with
a key outside the project (``TAGSMITH_CONFIG_DIR``/``TAGSMITH_AUDIT_KEY_FILE``) and a
checkpoint beside the key records how far the log went.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.hostile.cli_helpers import run


def _canonical(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _forge(log: Path, drop: slice) -> None:
    """What the hostile run's script did: drop entries, re-hash the rest, rewrite the head."""
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    del entries[drop]
    prev = "0" * 64
    for seq, entry in enumerate(entries, start=1):
        entry["seq"], entry["prev"] = seq, prev
        body = {k: v for k, v in entry.items() if k != "hash"}
        entry["hash"] = prev = hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()
    log.write_text("".join(_canonical(e) + "\n" for e in entries), encoding="utf-8")
    head = log.with_name(log.name + ".head")
    head.write_text(json.dumps({"n": len(entries), "hash": prev}) + "\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert run(root, "init").exit_code == 0
    for _ in range(20):  # refused promotions: each one an audited "denied" entry
        assert run(root, "models", "promote", "churn-predictor", role="marketing").exit_code == 2
    assert "intact: 20 entries" in run(root, "audit", "verify").output
    return root


def test_rewritten_chain_is_detected(project: Path) -> None:
    _forge(project / "data" / "audit.log", slice(2, 20))  # 18 entries dropped
    result = run(project, "audit", "verify")
    assert result.exit_code == 1, result.output
    assert "content does not match its hash" in result.output
    assert "entries deleted" in result.output


def test_deleting_log_and_head_is_detected(project: Path) -> None:
    (project / "data" / "audit.log").unlink()
    (project / "data" / "audit.log.head").unlink()
    result = run(project, "audit", "verify")
    assert result.exit_code == 1, result.output
    assert "intact" not in result.output
    assert "records entry #20 but the log is missing" in result.output.replace("\n", "")
    # Nothing is appended to a log that lost entries, so the evidence stays.
    again = run(project, "models", "promote", "churn-predictor", role="marketing")
    assert again.exit_code == 2
    assert "entries were deleted" in again.output.replace("\n", "")


def test_cutting_the_end_and_the_head_is_detected(project: Path) -> None:
    log = project / "data" / "audit.log"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    log.write_text("".join(lines[:15]), encoding="utf-8")
    (project / "data" / "audit.log.head").unlink()
    result = run(project, "audit", "verify")
    assert result.exit_code == 1
    assert "it ends at #15: entries deleted" in result.output.replace("\n", "")


def test_key_and_checkpoint_live_outside_the_project(project: Path, tmp_path: Path) -> None:
    import os

    config = Path(os.environ["TAGSMITH_CONFIG_DIR"])
    assert (config / "audit.key").is_file()
    assert oct((config / "audit.key").stat().st_mode & 0o777) == "0o600"
    assert not any(p.suffix == ".key" for p in project.rglob("*"))
    # A copy of the project (a backup, say) still verifies: the key is the user's.
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    assert "intact: 20 entries" in run(copy, "audit", "verify").output


def test_restore_moves_the_checkpoint_back_deliberately(project: Path, tmp_path: Path) -> None:
    assert run(project, "store", "backup", str(tmp_path / "bk")).exit_code == 0
    for _ in range(3):
        run(project, "models", "promote", "churn-predictor", role="marketing")
    restored = run(project, "store", "restore", str(tmp_path / "bk"), "--yes")
    assert restored.exit_code == 0, restored.output
    result = run(project, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact: 21 entries" in result.output  # the 20 backed up + the restore


def test_a_new_project_where_a_deleted_one_was_starts_a_new_chain(project: Path) -> None:
    shutil.rmtree(project)
    assert run(project, "init").exit_code == 0
    denied = run(project, "models", "promote", "churn-predictor", role="marketing")
    assert denied.exit_code == 2
    assert "entries were deleted" not in denied.output.replace("\n", "")
    assert "intact: 1 entries" in run(project, "audit", "verify").output


def test_init_keeps_the_checkpoint_of_a_log_still_there(project: Path) -> None:
    (project / "tagsmith.yaml").unlink()
    log = project / "data" / "audit.log"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    log.write_text("".join(lines[:15]), encoding="utf-8")
    (project / "data" / "audit.log.head").unlink()
    assert run(project, "init").exit_code == 0
    result = run(project, "audit", "verify")
    assert result.exit_code == 1
    assert "it ends at #15: entries deleted" in result.output.replace("\n", "")
