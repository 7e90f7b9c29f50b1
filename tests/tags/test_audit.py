from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from tags.audit import GENESIS, AuditLog
from tags.errors import AuditError


def _filled(path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(
            actor="ana",
            role="marketing",
            action="export",
            tags=["lifecycle"],
            n_customers=10 * i,
            query=f"q{i}",
        )
    return log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_entries_are_chained(tmp_path: Path) -> None:
    log = _filled(tmp_path / "audit.log")
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert entries[2]["n_customers"] == 20
    assert entries[2]["role"] == "marketing"
    assert log.verify().ok


def test_verify_names_an_edited_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path)
    lines = _lines(path)
    lines[2] = lines[2].replace('"n_customers":20', '"n_customers":2')
    path.write_text("\n".join(lines) + "\n")
    report = log.verify()
    assert not report.ok
    assert report.problems == [(3, "content does not match its hash (edited)")]


def test_verify_catches_an_edit_with_a_recomputed_hash(tmp_path: Path) -> None:
    from tags.audit import _canonical, _digest

    path = tmp_path / "audit.log"
    log = _filled(path)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    entry["hash"] = _digest(entry)
    lines[1] = _canonical(entry)
    path.write_text("\n".join(lines) + "\n")
    assert [n for n, _ in log.verify().problems] == [2]


def test_verify_names_a_deleted_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path)
    lines = _lines(path)
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    assert log.verify().problems == [(2, "entry #2 deleted just before this line")]


def test_verify_catches_lines_cut_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path)
    path.write_text("\n".join(_lines(path)[:3]) + "\n")
    problems = log.verify().problems
    assert len(problems) == 1
    assert problems[0][0] == 4
    assert "entries #4-#5 deleted from the end" in problems[0][1]


def test_appending_to_a_damaged_tail_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path, 2)
    with path.open("a") as fh:
        fh.write("garbage\n")
    with pytest.raises(AuditError, match="damaged"):
        log.append(actor="a", role="r", action="read")


def _append_many(path: str, who: str) -> None:
    log = AuditLog(Path(path))
    for i in range(25):
        log.append(actor=who, role="admin", action="read", query=str(i))


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    log = AuditLog(path)
    report = log.verify()
    assert report.ok, report.problems
    assert report.n_entries == 50
    assert sorted({e["actor"] for e in log.entries()}) == ["p1", "p2"]
