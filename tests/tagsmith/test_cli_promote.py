"""`tagsmith models promote` and `contest` end to end on a real (tiny) training run.

Simulated facts are written to the project's fact store; training, the re-scoring
window and the rule tags all use the real feature builder and the standard library.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from features.build import build_features
from features.spec import default_spec
from features.store import FactStore
from tagsmith.cli import main
from tagsmith.cli._common import console
from tagsmith.config import ProjectConfig
from tagsmith.project import Project
from tests.training.conftest import simulate_facts
from training.config import TrainingConfig
from training.pipeline import train_predictor
from training.tracking import log_training

CONFIG = TrainingConfig(num_boost_round=30, learning_rate=0.2)


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with simulated facts and two identical registered churn models (v2 challenger)."""
    customers, events = simulate_facts(600, seed=3)
    project = Project.init(
        tmp_path_factory.mktemp("promote") / "proj", config=ProjectConfig(training=CONFIG)
    )
    store = FactStore(project.facts_dir)
    with store.lock():
        store.write(
            customers=customers,
            events=events,
            log_entries=[],
            now=pd.Timestamp("2024-07-01", tz="UTC"),
        )
    result = train_predictor(
        customers,
        events,
        target="churn",
        config=CONFIG,
        feature_builder=build_features,
        spec=default_spec(),
        n_jobs=1,
    )
    uri = f"sqlite:///{(project.mlflow_dir / 'mlflow.db').as_posix()}"
    for _ in range(2):
        log_training(result, tracking_uri=uri, artifacts_dir=project.mlflow_artifacts_dir)
    return project.root


@pytest.fixture
def trained(trained_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TAGSMITH_USER", "ops-ana")
    monkeypatch.setattr(console, "_width", 220)
    # Artifacts stay in the template (read-only); the registry database is per test.
    shutil.copytree(trained_template, tmp_path / "proj", ignore=shutil.ignore_patterns("artifacts"))
    return Project.load(tmp_path / "proj")


def run(project: Project, *args: str) -> tuple[int, str]:
    # Promotion and rollback are policy actions: act as admin (finding 14-9).
    result = CliRunner().invoke(
        main, ["--project", str(project.root), "models", *args], env={"TAGSMITH_ROLE": "admin"}
    )
    return result.exit_code, result.output


def test_promote_prints_gate_table_and_records(trained: Project) -> None:
    from tags.audit import AuditLog

    # First champion: judged against the best baseline on each metric.
    code, out = run(trained, "promote", "churn-predictor", "--version", "1")
    assert "auc (higher better)" in out
    assert "baseline" in out
    if code == 1:  # the tiny model did not beat the baselines: force it, with a reason
        assert "REJECTED" in out
        code, out = run(trained, "promote", "churn-predictor", "--version", "1", "--force")
        assert code == 2
        assert "--reason" in out
        code, out = run(
            trained,
            "promote",
            "churn-predictor",
            "--version",
            "1",
            "--force",
            "--reason",
            "bootstrap the demo",
        )
        assert "FORCED" in out
    assert code == 0, out
    # The challenger (v2, the same model) against champion v1: equal is not worse.
    code, out = run(trained, "promote", "churn-predictor")
    assert code == 0, out
    assert "v2 vs champion v1" in out
    assert "PROMOTED" in out
    assert out.count("PASS") == 2
    code, out = run(trained, "promote", "churn-predictor")
    assert code == 2
    assert "already the champion" in out
    entries = AuditLog(trained.audit_log_path).entries()
    assert [e["action"] for e in entries][-1] == "models.promote"
    assert entries[-1]["actor"] == "ops-ana"
    assert entries[-1]["tags"] == ["churn_risk"]
    code, out = run(trained, "history", "churn-predictor", "--alias", "champion")
    assert "ops-ana" in out
    assert "v1" in out
    assert "v2" in out


def test_contest_scores_baselines_and_models_on_one_table(trained: Project) -> None:
    from tags.audit import AuditLog

    code, out = run(trained, "contest", "churn_risk")
    assert code == 0, out
    for producer in (
        "baseline recency",
        "baseline bgnbd",
        "churn-predictor/2 (challenger)",
        "rule browse_churn",
        "rule lifecycle_stage=dormant,churned",
    ):
        assert producer in out
    assert "top_decile_lift" in out
    assert AuditLog(trained.audit_log_path).entries()[-1]["action"] == "models.contest"
    code, out = run(trained, "contest", "rfm_segment")
    assert code == 2
    assert "churn_risk" in out


def test_rollback_smoke_tests_the_restored_version_on_current_features(
    trained: Project,
) -> None:
    from training.registry import ModelRegistry

    registry = ModelRegistry(
        trained.mlflow_tracking_uri, trained.model_history_path, trained.model_locks_dir
    )
    for version, expected in (("1", None), ("2", "1")):
        registry.move_alias(
            "churn-predictor", "champion", version, expected=expected, actor="ana", action="promote"
        )
    code, out = run(trained, "rollback", "churn-predictor", "--reason", "check")
    assert code == 0, out
    assert "load-checked only" not in out
    assert "from v2 to v1" in out


def test_two_processes_promoting_at_once_one_wins_the_other_fails_cleanly(
    trained: Project,
) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "TAGSMITH_USER": "proc", "TAGSMITH_ROLE": "admin"}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [
        sys.executable,
        "-m",
        "tagsmith",
        "--project",
        str(trained.root),
        "models",
        "promote",
        "churn-predictor",
        "--version",
        "1",
        "--force",
        "--reason",
        "race",
    ]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [
        (p.wait(timeout=300), p.stdout.read() + p.stderr.read())  # type: ignore[union-attr]
        for p in procs
    ]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(out for code, out in outcomes if code == 2)
    assert "Traceback" not in loser
    # Overlapping: the compare-and-set (or the lock) refuses; sequential: already champion.
    assert "already the champion" in loser or "nothing was changed" in loser, loser
    from training.registry import ModelRegistry

    registry = ModelRegistry(
        trained.mlflow_tracking_uri, trained.model_history_path, trained.model_locks_dir
    )
    assert registry.alias_version("churn-predictor", "champion") == "1"
    events = registry.history.events("churn-predictor", "champion")
    assert [(e.version, e.action) for e in events] == [("1", "force-promote")]
    # The challenger set by training was observed once, not once per process.
    assert len(registry.history.events("churn-predictor", "challenger")) == 1
