"""Hostile finding 14-6 (audit part): a non-UTF-8 line in the audit log.

A line of bytes appended by another tool made ``audit verify`` die with a
``UnicodeDecodeError`` traceback; it is now reported by line number like any other
damage, and the lines around it are still checked.
"""

from __future__ import annotations

from pathlib import Path

from tags.audit import AuditLog
from tests.hostile.cli_helpers import run


def test_non_utf8_line_is_reported_by_number(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for i in range(3):
        log.append(action="read", actor="a", role="r", query=f"q{i}")
    with log.path.open("ab") as fh:
        fh.write(b"\xff\xfe not text\n")
    report = log.verify()
    assert report.n_entries == 4
    assert report.problems == [(4, "not UTF-8 text (edited or corrupted)")]


def test_audit_verify_command_reports_it(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    assert run(root, "init").exit_code == 0
    assert run(root, "audit", "verify").exit_code == 0
    log = root / "data" / "audit.log"
    with log.open("ab") as fh:
        fh.write(b'{"seq": 9, "query": "caf\xe9"}\n')
    result = run(root, "audit", "verify")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "not UTF-8 text" in result.output
