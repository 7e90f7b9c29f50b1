"""``tagsmith triggers ...`` end to end: define, apply, fire from ``tags run``, deliver,
inspect, replay; the dispatcher killed with SIGKILL mid-batch loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from activation.outbox import Outbox
from tags.audit import AuditLog
from tags.store import TagStore
from tagsmith.cli import main
from tests.activation.receiver import Receiver
from tests.tags.conftest import long_table

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret"
# A named role: without one the local CLI acts as the all-powerful owner, and these
# tests check what the policy refuses to a role with less power.
ENV = {"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": "marketing", "CRM_SECRET": SECRET}


def run(root: Path, *args: str, role: str | None = None):
    argv = ["--project", str(root), *args] + (["--role", role] if role else [])
    return CliRunner().invoke(main, argv, env=ENV)


@pytest.fixture
def receiver():
    r = Receiver(secret=SECRET.encode()).up()
    yield r
    r.down()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert run(root, "init").exit_code == 0
    return root


def snapshot(root: Path, rows: list[tuple[str, str, str]], as_of: str) -> None:
    TagStore(root / "data" / "tags.duckdb").write_snapshot(long_table(rows, as_of), as_of=as_of)


def fast_retries(root: Path, name: str, **extra: object) -> None:
    """Shorten a destination's retry delays in its YAML (tests only)."""
    path = root / "triggers" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data["destinations"][0].update({"backoff_base_s": 0.05, "backoff_max_s": 0.2, **extra})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_define_apply_fire_deliver_inspect_replay(project: Path, receiver: Receiver) -> None:
    ids = [f"C{i:03d}" for i in range(12)]
    snapshot(project, [(c, "lifecycle_stage", "active") for c in ids], "2024-01-31")
    added = run(
        project,
        "triggers",
        "add",
        "winback",
        "--on-enter",
        "lifecycle_stage = 'dormant' and old_customer",
        "--webhook",
        receiver.url,
        "--secret-env",
        "CRM_SECRET",
        "--include",
        "lifecycle_stage,rfm_segment",
        "--batch-size",
        "10",
    )
    assert added.exit_code == 0, added.output
    fast_retries(project, "winback", max_attempts=2)
    plan = run(project, "triggers", "plan")
    assert plan.exit_code == 0, plan.output
    assert "+ trigger winback (new, active, v1)" in plan.output
    assert "+ destination winback" in plan.output
    refused = run(project, "triggers", "apply")  # marketing may not change definitions
    assert refused.exit_code == 2
    assert "may not catalogue" in refused.output
    applied = run(project, "triggers", "apply", role="admin")
    assert applied.exit_code == 0, applied.output
    assert "applied triggers v1" in applied.output
    # Eight customers turn dormant; six of them are old customers.
    feb = [(c, "lifecycle_stage", "dormant" if i < 8 else "active") for i, c in enumerate(ids)]
    feb += [(c, "old_customer", "true") for c in ids[:6]]
    receiver.faults = ["500", "500"]  # the batch dies after its two attempts
    snapshot(project, feb, "2024-02-29")
    fired = run(project, "triggers", "run", "--until", "drained", "--max-seconds", "30")
    assert fired.exit_code == 0, fired.output
    assert "1 transition group(s), 6 fired, 0 delivered in 0 batch(es)" in fired.output
    assert "6 dead letters" in fired.output
    listing = run(project, "triggers", "list")
    assert listing.exit_code == 0, listing.output
    assert "winback" in listing.output
    assert "v1 active" in listing.output
    dead = run(project, "triggers", "deliveries", "--state", "dead", "--format", "json")
    assert dead.exit_code == 0, dead.output
    [batch] = json.loads(dead.output)["batches"]
    assert batch["attempts"] == 2
    assert "HTTP 500" in batch["last_error"]
    body = run(project, "triggers", "deliveries", "--batch", str(batch["id"]), "--body")
    assert body.exit_code == 0, body.output
    events = json.loads(body.output)["body"]["events"]
    assert {e["customer_id"] for e in events} == set(ids[:6])
    replay = run(project, "triggers", "replay", str(batch["id"]))
    assert replay.exit_code == 0, replay.output
    assert "6 delivered" in replay.output
    got = {e["customer_id"] for e in receiver.events(accepted_only=True)}
    assert got == set(ids[:6])
    first = receiver.events()
    assert all(e["tags"]["lifecycle_stage"] == "dormant" for e in first)
    assert all(r.signature_ok for r in receiver.requests)
    actions = [e["action"] for e in AuditLog(project / "data" / "audit.log").entries()]
    for action in ("trigger_apply", "trigger_fire", "deliver", "dead_letter", "replay", "export"):
        assert action in actions, action
    log_text = (project / "data" / "audit.log").read_text()
    assert not any(f'"{c}"' in log_text for c in ids)


def test_apply_refuses_a_trigger_reading_what_its_role_may_not_see(project: Path) -> None:
    result = run(
        project,
        "triggers",
        "add",
        "care",
        "--on-enter",
        "complaint_risk",
        "--webhook",
        "https://crm.example.com/h",
    )
    assert result.exit_code == 2
    assert "may not read complaint_risk (risk, restricted)" in result.output
    assert not (project / "triggers" / "care.yaml").exists()
    ok = run(
        project,
        "triggers",
        "add",
        "care",
        "--on-enter",
        "complaint_risk",
        "--webhook",
        "https://crm.example.com/h",
        "--purpose",
        "service",
        role="executive",
    )
    assert ok.exit_code == 0, ok.output
    assert "not signed" in ok.output
    # Someone edits the role to marketing by hand: apply refuses and audits the refusal.
    path = project / "triggers" / "care.yaml"
    path.write_text(path.read_text().replace("role: executive", "role: marketing"))
    refused = run(project, "triggers", "apply", role="admin")
    assert refused.exit_code == 1
    assert "may not read complaint_risk" in refused.output
    assert not (project / "data" / "trigger_versions").exists()
    (denied,) = [
        e for e in AuditLog(project / "data" / "audit.log").entries() if e["action"] == "denied"
    ]
    assert denied["query"] == "triggers apply"


def test_test_command_dry_runs_and_sends_a_signed_test_event(
    project: Path, receiver: Receiver
) -> None:
    snapshot(
        project,
        [("a", "lifecycle_stage", "active"), ("b", "lifecycle_stage", "active")],
        "2024-01-31",
    )
    snapshot(
        project,
        [("a", "lifecycle_stage", "churned"), ("b", "lifecycle_stage", "active")],
        "2024-02-29",
    )
    assert (
        run(
            project,
            "triggers",
            "add",
            "lost",
            "--on-enter",
            "lifecycle_stage = 'churned'",
            "--webhook",
            receiver.url,
            "--secret-env",
            "CRM_SECRET",
        ).exit_code
        == 0
    )
    result = run(project, "triggers", "test", "lost", "--send")
    assert result.exit_code == 0, result.output
    assert "1 candidate(s), 1 would fire (entered)" in result.output
    assert "first customers: a" in result.output
    assert "test event delivered to lost: HTTP 200" in result.output
    [request] = receiver.requests
    assert request.signature_ok
    assert request.events[0]["test"] is True
    assert (
        not (project / "data" / "activation.sqlite").exists()
        or Outbox(project / "data" / "activation.sqlite").open_count() == 0
    )


def test_audience_sync_to_a_file_drop_full_then_changes(project: Path) -> None:
    snapshot(project, [("a", "old_customer", "true"), ("b", "old_customer", "true")], "2024-01-31")
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
        "--include",
        "old_customer",
    )
    assert added.exit_code == 0, added.output
    assert run(project, "triggers", "apply", role="admin").exit_code == 0
    first = run(project, "triggers", "run", "--until", "idle", "--max-seconds", "20")
    assert first.exit_code == 0, first.output
    folder = project / "exports" / "loyal-list"
    full = pd.read_csv(folder / "loyal-list-000001-full.csv")
    assert sorted(full["customer_id"]) == ["a", "b"]
    assert set(full["op"]) == {"add"}
    snapshot(project, [("b", "old_customer", "true"), ("c", "old_customer", "true")], "2024-02-29")
    second = run(project, "triggers", "run", "--until", "idle", "--max-seconds", "20")
    assert second.exit_code == 0, second.output
    changes = pd.read_csv(folder / "loyal-list-000002-changes.csv")
    assert sorted(zip(changes["op"], changes["customer_id"], strict=True)) == [
        ("add", "c"),
        ("remove", "a"),
    ]
    third = run(project, "triggers", "run", "--until", "idle", "--max-seconds", "20")
    assert third.exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "loyal-list-000001-full.csv",
        "loyal-list-000002-changes.csv",
    ]


def test_tags_run_fires_applied_triggers_like_the_snapshot_diff_says(
    tmp_path: Path, receiver: Receiver
) -> None:
    root = tmp_path / "p"
    raw = tmp_path / "raw"
    for argv in (
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
    ):
        result = run(root, *argv)
        assert result.exit_code == 0, result.output
    assert run(root, "tags", "run", "--as-of", "2024-09-01", role="admin").exit_code == 0
    assert (
        run(
            root,
            "triggers",
            "add",
            "dormant",
            "--on-enter",
            "lifecycle_stage = 'dormant'",
            "--webhook",
            receiver.url,
            "--secret-env",
            "CRM_SECRET",
            "--include",
            "rfm_segment",
        ).exit_code
        == 0
    )
    assert run(root, "triggers", "apply", role="admin").exit_code == 0
    result = run(root, "tags", "run", "--as-of", "2024-12-01", role="admin")
    assert result.exit_code == 0, result.output
    diff = TagStore(root / "data" / "tags.duckdb").diff(
        "2024-09-01", "2024-12-01", "lifecycle_stage"
    )
    expected = set(diff.loc[diff["to_value"] == "dormant", "customer_id"])
    assert expected, "the synthetic data should move someone to dormant"
    assert f"triggers: {len(expected):,} fired, {len(expected):,} delivered" in result.output
    assert {e["customer_id"] for e in receiver.events()} == expected


def test_kill_9_of_the_dispatcher_mid_batch_loses_nothing(project: Path) -> None:
    slow = Receiver(secret=SECRET.encode(), delay_s=0.25).up()
    try:
        ids = [f"K{i:04d}" for i in range(120)]
        snapshot(project, [(c, "lifecycle_stage", "active") for c in ids], "2024-01-31")
        assert (
            run(
                project,
                "triggers",
                "add",
                "k",
                "--on-exit",
                "lifecycle_stage = 'active'",
                "--webhook",
                slow.url,
                "--secret-env",
                "CRM_SECRET",
                "--batch-size",
                "10",
            ).exit_code
            == 0
        )
        assert run(project, "triggers", "apply", role="admin").exit_code == 0
        snapshot(project, [(c, "lifecycle_stage", "churned") for c in ids], "2024-02-29")
        cmd = [
            sys.executable,
            "-m",
            "tagsmith",
            "--project",
            str(project),
            "triggers",
            "run",
            "--until",
            "drained",
            "--max-seconds",
            "120",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CRM_SECRET": SECRET}
        env.pop("TAGSMITH_ROLE", None)
        proc = subprocess.Popen(
            cmd,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 90
            while len(slow.requests) < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(slow.requests) >= 4, "the dispatcher never started delivering"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # mid-request: the receiver is still answering
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        delivered_before = len({e["customer_id"] for e in slow.events()})
        assert delivered_before < len(ids)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr[-2000:]
        keys: dict[str, set[str]] = defaultdict(set)
        for e in slow.events():
            keys[e["customer_id"]].add(e["id"])
        assert set(keys) == set(ids)
        assert all(len(k) == 1 for k in keys.values())
        # The batch in flight at the kill went again, with its idempotency key.
        by_batch: dict[str, list[str]] = defaultdict(list)
        for r in slow.requests:
            by_batch[r.headers["Idempotency-Key"]].append(r.headers["X-Tagsmith-Attempt"])
        assert any(len(attempts) > 1 for attempts in by_batch.values())
        assert Outbox(project / "data" / "activation.sqlite").open_count() == 0
    finally:
        slow.down()
