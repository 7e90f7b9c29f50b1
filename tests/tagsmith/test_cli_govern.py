"""``tagsmith tags lint`` (and its lines in ``tags validate`` / ``tags report``) on a
generated project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tagsmith.cli import main

# The library's old_customer (frequency_orders >= 3) again, under another name and a
# rule written differently: the same customers, so lint must report the pair.
TWIN = {
    "tags": [
        {
            "id": "frequent_buyer",
            "display_name": "行为_常客",
            "category": "behaviour",
            "description": "Customers with more than two purchases.",
            "owner": "someone-else",
            "source": "rule",
            "value_type": "boolean",
            "status": "active",
            "rule": "frequency_orders > 2",
        }
    ]
}


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--project", str(root), *args], env={"TAGSMITH_USER": "tester"}
    )
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project (300 customers) with a twin tag, tagged once."""
    root = tmp_path_factory.mktemp("lint_project")
    raw = root / "raw"
    steps = [
        ["init"],
        ["generate", "--customers", "300", "--seed", "5", "--out", str(raw)],
        [
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ],
    ]
    for step in steps:
        code, out = run(root, *step)
        assert code == 0, out
    (root / "catalogue" / "twin.yaml").write_text(
        yaml.safe_dump(TWIN, allow_unicode=True), encoding="utf-8"
    )
    code, out = run(root, "tags", "run", "--role", "admin")
    assert code == 0, out
    return root


def test_lint_reports_a_twin_tag_on_a_generated_project(tagged: Path) -> None:
    code, out = run(tagged, "tags", "lint", "--format", "json")
    assert code == 0, out
    findings = json.loads(out)
    twins = [
        f
        for f in findings
        if f["kind"] == "overlap" and set(f["tags"]) == {"old_customer", "frequent_buyer"}
    ]
    assert len(twins) == 1, findings
    assert twins[0]["score"] == 1.0
    assert "merge 'frequent_buyer' into 'old_customer'" in twins[0]["suggestion"]
    # No other pair of the standard library is a twin at the default threshold.
    assert all(
        set(f["tags"]) == {"old_customer", "frequent_buyer"}
        for f in findings
        if f["kind"] == "overlap"
    )

    code, out = run(tagged, "tags", "lint", "--strict")
    assert code == 1
    assert "frequent_buyer" in out
    assert "overlap" in out


def test_validate_and_report_show_lint_findings(tagged: Path) -> None:
    code, out = run(tagged, "tags", "validate")
    assert code == 0, out
    assert "lint overlap" in out
    assert "frequent_buyer" in out
    report = tagged / "r.html"
    code, out = run(tagged, "tags", "report", "--role", "admin", "--out", str(report))
    assert code == 0, out
    assert "1 lint finding(s)" in out
    html = report.read_text(encoding="utf-8")
    assert "Redundant and dead tags" in html
    assert "frequent_buyer" in html


def test_lint_is_clean_without_the_twin(tmp_path: Path) -> None:
    code, out = run(tmp_path / "p", "init")
    assert code == 0, out
    code, out = run(tmp_path / "p", "tags", "lint")
    assert code == 0, out
    assert "No redundant or dead tags" in out
