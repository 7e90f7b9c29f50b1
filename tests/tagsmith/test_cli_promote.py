"""`tagsmith models promote` and `contest` end to end on a real (tiny) training run.

The project's facts are simulated and features come from the training tests' small
builder (patched in as the window loader), so the test exercises the CLI, training's
labels/baselines/tracking and the registry without the full feature catalogue.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tagsmith.cli import main
from tagsmith.cli import models as models_cli
from tagsmith.cli._common import console
from tagsmith.project import Project
from tests.training.conftest import simulate_facts, tiny_build_features
from training.config import TrainingConfig
from training.pipeline import train_predictor
from training.rescoring import Rescoring, latest_rescoring
from training.tracking import log_training

CONFIG = TrainingConfig(num_boost_round=30, learning_rate=0.2)


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TAGSMITH_USER", "ops-ana")
    monkeypatch.setattr(console, "_width", 220)
    customers, events = simulate_facts(600, seed=3)
    project = Project.init(tmp_path / "proj")

    def window(project: Project, target: str, horizon_days: int | None) -> Rescoring:
        return latest_rescoring(customers, events, target=target, config=CONFIG,
                                feature_builder=tiny_build_features, horizon_days=horizon_days)

    monkeypatch.setattr(models_cli, "latest_rescoring", window)
    result = train_predictor(customers, events, target="churn", config=CONFIG,
                             feature_builder=tiny_build_features, n_jobs=1)
    for _ in range(2):  # v1 and an identical v2 (challenger)
        log_training(result, tracking_uri=project.mlflow_tracking_uri,
                     artifacts_dir=project.mlflow_artifacts_dir)
    return project


def run(project: Project, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project.root), "models", *args])
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
        code, out = run(trained, "promote", "churn-predictor", "--version", "1", "--force",
                        "--reason", "bootstrap the demo")
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
    for producer in ("baseline recency", "baseline bgnbd", "churn-predictor/2 (challenger)"):
        assert producer in out
    assert "top_decile_lift" in out
    assert AuditLog(trained.audit_log_path).entries()[-1]["action"] == "models.contest"
    code, out = run(trained, "contest", "rfm_segment")
    assert code == 2
    assert "churn_risk" in out
