"""Consent and purpose: records per customer and purpose; exports, audience syncs and
triggers leave out who did not consent; undeclared purposes are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from features.consent import ConsentBook, ConsentConfig
from features.errors import StoreError
from tags.audit import AuditLog
from tags.store import TagStore
from tagsmith.cli import main
from tests.tags.conftest import long_table

# A named role: without one the local CLI acts as the all-powerful owner, and these
# tests check what the policy refuses to a role with less power.
ENV = {"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": "marketing"}
NOW = pd.Timestamp("2024-06-01", tz="UTC")


def run(root: Path, *args: str, role: str | None = None):
    argv = ["--project", str(root), *args] + (["--role", role] if role else [])
    return CliRunner().invoke(main, argv, env=ENV)


def test_latest_record_wins_defaults_and_attributes(tmp_path: Path) -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_at": pd.to_datetime(["2023-01-01"] * 4, utc=True),
            "consent_marketing": ["yes", "no", "", "yes"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["e", "e", "d"],
            "occurred_at": pd.to_datetime(["2024-01-01", "2024-04-01", "2024-04-01"], utc=True),
            "event_type": ["consent_withdrawn", "consent_given", "purchase"],
            "category": ["marketing", "profiling", "marketing"],
        }
    )
    book = ConsentBook(
        tmp_path / "consent.parquet",
        ConsentConfig(purposes={"marketing": "granted", "profiling": "refused"}),
        customers=lambda: customers,
        events=lambda: events,
    )
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "c", "", "d", "d"],
            "purpose": ["marketing", "marketing", "profiling", "marketing", "sales", "marketing"],
            "granted": ["yes", "no", "yes", "yes", "yes", "maybe"],
            "at": ["2024-01-01", "2024-03-01", "2024-02-01", "", "", ""],
        }
    )
    result = book.import_frame(frame, source="c.csv", now=NOW)
    assert result.accepted == 3
    assert len(result.rejected) == 3
    assert any("line 5: field 'customer_id'" in r for r in result.rejected)
    assert any("line 6: field 'purpose'" in r and "'sales'" in r for r in result.rejected)
    assert any("line 7: field 'granted'" in r and "'maybe'" in r for r in result.rejected)
    ids = ["a", "b", "c", "d", "e"]
    # a: attribute yes at signup, then yes, then no (latest); b: attribute no; c: default
    # granted; d: attribute yes (a purchase is no consent event); e: withdrawn by event.
    assert book.allowed("marketing", ids).tolist() == [False, False, True, True, False]
    # profiling is opt-in: c granted it in a file, e by an event.
    assert book.allowed("profiling", ids).tolist() == [False, False, True, False, True]
    with pytest.raises(StoreError, match="expected a purpose declared"):
        book.allowed("sales", ids)
    assert isinstance(book.allowed("marketing", []), np.ndarray)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert run(root, "init").exit_code == 0
    config = yaml.safe_load((root / "tagsmith.yaml").read_text())
    config["governance"]["consent"]["purposes"] = {"marketing": "granted", "profiling": "refused"}
    (root / "tagsmith.yaml").write_text(yaml.safe_dump(config))
    rows = [(c, "old_customer", "true") for c in ("a", "b", "c")]
    TagStore(root / "data" / "tags.duckdb").write_snapshot(
        long_table(rows, "2024-01-31"), as_of="2024-01-31"
    )
    records = root.parent / "consent.csv"
    records.write_text("customer_id,purpose,granted\nb,marketing,no\nc,profiling,yes\n")
    refused = run(root, "customers", "consent", "import", str(records))
    assert refused.exit_code == 2  # marketing may not import consent
    done = run(root, "customers", "consent", "import", str(records), role="admin")
    assert done.exit_code == 0, done.output
    assert "imported 2 consent record(s), 0 rejected" in done.output
    return root


def test_exports_need_a_declared_purpose_and_leave_refusers_out(
    project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t.csv"
    missing = run(project, "tags", "export", "--out", str(out))
    assert missing.exit_code == 2
    assert "must declare its purpose" in missing.output
    assert not out.exists()
    wrong = run(project, "tags", "export", "--out", str(out), "--purpose", "sales")
    assert wrong.exit_code == 2
    assert not out.exists()
    ok = run(project, "tags", "export", "--out", str(out), "--purpose", "marketing")
    assert ok.exit_code == 0, ok.output
    assert sorted(pd.read_csv(out)["customer_id"]) == ["a", "c"]
    assert "left out 1 customer(s)" in ok.output
    aud = tmp_path / "a.csv"
    ok = run(
        project, "audience", "select", "old_customer", "--out", str(aud), "--purpose", "profiling"
    )
    assert ok.exit_code == 0, ok.output
    assert pd.read_csv(aud)["customer_id"].tolist() == ["c"]
    consent = [
        e
        for e in AuditLog(project / "data" / "audit.log").entries()
        if e["action"] == "consent" and "purpose" in e["extra"]
    ]
    assert [(e["extra"]["purpose"], e["n_customers"]) for e in consent] == [
        ("marketing", 1),
        ("profiling", 2),
    ]


def test_syncs_leave_refusers_out_and_undeclared_purposes_are_refused(project: Path) -> None:
    assert run(project, "audience", "save", "loyal", "old_customer").exit_code == 0
    added = run(
        project,
        "triggers",
        "add",
        "loyal-list",
        "--audience",
        "loyal",
        "--drop",
        "exports",
        "--file-format",
        "csv",
    )
    assert added.exit_code == 0, added.output
    path = project / "triggers" / "loyal-list.yaml"
    data = yaml.safe_load(path.read_text())
    for kind in ("syncs", "destinations"):
        data[kind][0]["purpose"] = "sales"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = run(project, "triggers", "plan")
    assert plan.exit_code == 1
    assert "governance.consent.purposes" in plan.output
    refused = run(project, "triggers", "apply", role="admin")
    assert refused.exit_code == 1
    for kind in ("syncs", "destinations"):
        data[kind][0]["purpose"] = "marketing"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run(project, "triggers", "apply", role="admin").exit_code == 0
    first = run(project, "triggers", "run", "--until", "idle", "--max-seconds", "20")
    assert first.exit_code == 0, first.output
    full = pd.read_csv(project / "exports" / "loyal-list" / "loyal-list-000001-full.csv")
    assert sorted(full["customer_id"]) == ["a", "c"]


def test_triggers_leave_out_who_did_not_consent(project: Path) -> None:
    from tests.activation.receiver import Receiver

    secret = "consent-secret"
    receiver = Receiver(secret=secret.encode()).up()
    try:
        store = TagStore(project / "data" / "tags.duckdb")
        ids = ["a", "b", "c"]
        store.write_snapshot(
            long_table([(c, "lifecycle_stage", "active") for c in ids], "2024-02-29"),
            as_of="2024-02-29",
        )
        env = {**ENV, "CRM_SECRET": secret}
        added = CliRunner().invoke(
            main,
            [
                "--project",
                str(project),
                "triggers",
                "add",
                "winback",
                "--on-enter",
                "lifecycle_stage = 'dormant'",
                "--webhook",
                receiver.url,
                "--secret-env",
                "CRM_SECRET",
            ],
            env=env,
        )
        assert added.exit_code == 0, added.output
        applied = CliRunner().invoke(
            main, ["--project", str(project), "triggers", "apply", "--role", "admin"], env=env
        )
        assert applied.exit_code == 0, applied.output
        store.write_snapshot(
            long_table([(c, "lifecycle_stage", "dormant") for c in ids], "2024-03-31"),
            as_of="2024-03-31",
        )
        fired = CliRunner().invoke(
            main,
            [
                "--project",
                str(project),
                "triggers",
                "run",
                "--until",
                "drained",
                "--max-seconds",
                "30",
            ],
            env=env,
        )
        assert fired.exit_code == 0, fired.output
        # b refused marketing (the trigger's purpose): only a and c are sent.
        assert sorted(e["customer_id"] for e in receiver.events()) == ["a", "c"]
    finally:
        receiver.down()
    fires = [
        e
        for e in AuditLog(project / "data" / "audit.log").entries()
        if e["action"] == "trigger_fire"
    ]
    assert [(e["n_customers"], e["extra"]["consent_excluded"]) for e in fires] == [(2, 1)]
