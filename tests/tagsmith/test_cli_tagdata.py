from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tags.audit import AuditLog
from tags.store import TagStore
from tagsmith.cli import main
from tests.tags.conftest import long_table

JAN = [
    ("c1", "lifecycle_stage", "new"),
    ("c2", "lifecycle_stage", "active"),
    ("c3", "lifecycle_stage", "active"),
    ("c1", "old_customer", "true"),
    ("c2", "rfm_segment", "important_value"),
    ("c2", "complaint_risk", "true"),
]
FEB = [
    ("c1", "lifecycle_stage", "active"),
    ("c2", "lifecycle_stage", "active"),
    ("c3", "lifecycle_stage", "dormant"),
    ("c1", "old_customer", "true"),
    ("c2", "old_customer", "true"),
    ("c2", "rfm_segment", "important_value"),
    ("c3", "rfm_segment", "important_value"),
    ("c3", "complaint_risk", "true"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    store = TagStore(root / "data" / "tags.duckdb")
    store.write_snapshot(long_table(JAN, "2024-01-31"), as_of="2024-01-31")
    store.write_snapshot(long_table(FEB, "2024-02-29"), as_of="2024-02-29")
    return root


def run(root: Path, *args: str, role: str | None = None):
    argv = ["--project", str(root), *args] + (["--role", role] if role else [])
    # A named role: without one the local CLI acts as the all-powerful owner, and these
    # tests check what the policy refuses to a role with less power.
    env = {"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": "marketing"}
    return CliRunner().invoke(main, argv, env=env)


def test_export_filters_by_role_and_refuses_restricted(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    result = run(project, "tags", "export", "--out", str(out))  # $TAGSMITH_ROLE: marketing
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert "complaint_risk" not in set(df["tag_id"])
    assert len(df) == 7
    refused = run(
        project, "tags", "export", "--tags", "complaint_risk", "--out", str(tmp_path / "r.csv")
    )
    assert refused.exit_code == 2
    assert "may not read complaint_risk" in refused.output
    assert not (tmp_path / "r.csv").exists()
    ok = run(
        project,
        "tags",
        "export",
        "--tags",
        "complaint_risk",
        "--as-of",
        "2024-01-31",
        "--out",
        str(tmp_path / "e.parquet"),
        role="executive",
    )
    assert ok.exit_code == 0, ok.output
    assert pd.read_parquet(tmp_path / "e.parquet")["customer_id"].tolist() == ["c2"]
    actions = [(e["role"], e["action"]) for e in AuditLog(project / "data" / "audit.log").entries()]
    assert actions == [("marketing", "export"), ("marketing", "denied"), ("executive", "export")]


def test_history_diff_transitions(project: Path) -> None:
    h = run(project, "tags", "history", "c1")
    assert h.exit_code == 0, h.output
    assert "2024-01-31: new -> 2024-02-29: active" in h.output
    d = run(project, "tags", "diff", "--from", "2024-01-31", "--to", "2024-02-29")
    assert d.exit_code == 0, d.output
    assert "complaint_risk" not in d.output  # restricted: not for marketing
    assert "4 changes, 3 customers" in d.output
    t = run(project, "tags", "transitions", "lifecycle_stage", "--customer", "c3")
    assert t.exit_code == 0, t.output
    assert "2024-02-29: active -> dormant" in t.output


def test_report_writes_html(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = run(project, "tags", "report", "--out", str(out), "--threshold", "0.2")
    assert result.exit_code == 0, result.output
    assert "share_shift" in result.output
    html = out.read_text()
    assert "data:image/png;base64," in html
    assert "complaint_risk" not in html


def test_audience_select_save_run(project: Path, tmp_path: Path) -> None:
    expr = "rfm_segment = 'important_value' and lifecycle_stage in ('active', 'dormant')"
    out = tmp_path / "aud.csv"
    result = run(project, "audience", "select", expr, "--out", str(out), "--save", "vip")
    assert result.exit_code == 0, result.output
    assert "audience: 2 customers" in result.output
    assert sorted(pd.read_csv(out)["customer_id"]) == ["c2", "c3"]
    again = run(project, "audience", "run", "vip", "--as-of", "2024-01-31")
    assert again.exit_code == 0, again.output
    assert "audience: 1 customers" in again.output
    listed = run(project, "audience", "list")
    assert "vip" in listed.output
    refused = run(project, "audience", "select", "complaint_risk")
    assert refused.exit_code == 2
    assert "may not read complaint_risk" in refused.output
    service = run(
        project,
        "audience",
        "select",
        "old_customer",
        "--out",
        str(tmp_path / "s.csv"),
        role="service",
    )
    assert service.exit_code == 2
    assert "may not export" in service.output
    typo = run(project, "audience", "select", "lifecycle_stag = 'new'")
    assert typo.exit_code == 2
    assert "lifecycle_stage" in typo.output  # suggestion


def test_tags_run_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "p"
    raw = tmp_path / "raw"
    steps = [
        ["init"],
        ["data", "generate", "--customers", "300", "--seed", "5", "--out", str(raw)],
        [
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ],
    ]
    for argv in steps:
        result = run(root, *argv)
        assert result.exit_code == 0, result.output
    refused = run(root, "tags", "run", role="marketing")
    assert refused.exit_code == 2
    assert "may not run" in refused.output
    # The refusal explains that the local role is self-asserted and how to act as admin.
    assert "self-asserted" in " ".join(refused.output.split())
    assert "--role admin" in refused.output
    first = run(root, "tags", "run", "--as-of", "2024-12-01", role="admin")
    assert first.exit_code == 0, first.output
    assert "no champion model yet: predicted tags skipped" in first.output
    assert "lifecycle_stage" in first.output
    again = run(root, "tags", "run", "--as-of", "2024-12-01", role="admin")
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
    store = TagStore(root / "data" / "tags.duckdb")
    assert len(store.runs()) == 1
    assert len(store.snapshot()) > 300
    (run_entry, _) = [
        e for e in AuditLog(root / "data" / "audit.log").entries() if e["action"] == "run"
    ]
    assert run_entry["role"] == "admin"
    assert run_entry["extra"]["reused"] is False


def test_catalogue_changes_are_audited(project: Path) -> None:
    first = run(project, "tags", "apply")
    assert first.exit_code == 0, first.output
    again = run(project, "tags", "apply")  # nothing changed: nothing to audit
    assert again.exit_code == 0, again.output
    entries = AuditLog(project / "data" / "audit.log").entries()
    (entry,) = [e for e in entries if e["action"] == "catalogue"]
    assert entry["query"] == "tags apply -> catalogue version 1"
    assert "lifecycle_stage" in entry["tags"]
    assert any(c.startswith("+ rfm_segment") for c in entry["extra"]["changes"])
