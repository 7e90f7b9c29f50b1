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


def test_schedule_runs_when_due_then_waits(tmp_path: Path) -> None:
    root = tmp_path / "s"
    raw = tmp_path / "raw"
    for step in (
        ["init"],
        ["generate", "--customers", "100", "--seed", "2", "--out", str(raw)],
        [
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ],
    ):
        code, out = run(root, *step)
        assert code == 0, out
    code, out = run(root, "schedule", "status", "--crontab")
    assert code == 0, out
    assert "next run due now" in out
    assert f"15 2 * * * cd {root.resolve()} && tagsmith schedule run --role admin" in out
    code, out = run(root, "schedule", "run", "--role", "admin")
    assert code == 0, out
    assert "due: refresh daily" in out
    assert "run " in out
    code, out = run(root, "schedule", "run", "--role", "admin")
    assert code == 0, out
    assert "not due: refresh daily" in out


def test_review_required_tag_needs_a_sign_off_before_apply(tagged: Path) -> None:
    code, out = run(tagged, "tags", "apply")
    assert code == 0, out
    path = tagged / "catalogue" / "behaviour.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    loyalty = next(t for t in data["tags"] if t["id"] == "loyalty_tier")
    assert loyalty["review"] == "required"
    loyalty["rule"]["cases"][0]["when"] = "loyalty_score >= 0.5"
    loyalty["version"] = 2
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(tagged, "tags", "plan")
    assert code == 1
    assert "loyalty_tier' needs a reviewer's sign-off" in out
    code, out = run(tagged, "tags", "apply")
    assert code == 2
    # Marketing may not review; an executive looks at sizes and a sample, then approves.
    code, out = run(tagged, "tags", "review", "loyalty_tier", "--approve", "--role", "marketing")
    assert code == 2
    code, out = run(tagged, "tags", "review", "loyalty_tier", "--role", "executive")
    assert code == 0, out
    assert "with this definition" in out
    assert "sample of 10 customer(s)" in out
    assert "re-run with --approve" in out
    code, out = run(
        tagged,
        "tags",
        "review",
        "loyalty_tier",
        "--approve",
        "--role",
        "executive",
        "--note",
        "threshold agreed with CRM",
    )
    assert code == 0, out
    assert "approved loyalty_tier v2 as tester (executive)" in out
    code, out = run(tagged, "tags", "apply")
    assert code == 0, out
    assert "Applied catalogue version 2" in out
    entries = [
        json.loads(line)
        for line in (tagged / "data" / "audit.log").read_text(encoding="utf-8").splitlines()
    ]
    [review] = [e for e in entries if e["action"] == "review"]
    assert review["actor"] == "tester"
    assert review["role"] == "executive"
    assert review["extra"]["decision"] == "approved"
    assert review["extra"]["sample_size"] == 10
    # Editing the approved definition again needs a new sign-off.
    loyalty["rule"]["cases"][1]["when"] = "loyalty_score >= 0.25"
    loyalty["version"] = 3
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(tagged, "tags", "plan")
    assert code == 1
    assert "needs a reviewer's sign-off" in out
