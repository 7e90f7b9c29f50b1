from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tagsmith.cli import main
from tagsmith.cli._common import console
from tagsmith.project import Project


@pytest.fixture
def project(
    registry_template: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Wide tables keep cells on one line so assertions can find them.
    monkeypatch.setattr(console, "_width", 200)
    project = Project.init(tmp_path / "proj")
    project.mlflow_dir.mkdir(parents=True)
    shutil.copy(registry_template[0] / "mlflow.db", project.mlflow_dir / "mlflow.db")
    return project


def run(project: Project, *args: str) -> tuple[int, str]:
    # Promotion and rollback are policy actions: act as admin (finding 14-9).
    result = CliRunner().invoke(
        main,
        ["--project", str(project.root), "models", *args],
        terminal_width=200,
        env={"TAGSMITH_ROLE": "admin"},
    )
    return result.exit_code, result.output


def test_list_and_show(project: Project) -> None:
    code, out = run(project, "list")
    assert code == 0, out
    assert "churn-predictor" in out
    assert "challenger=v1" in out
    code, out = run(project, "show", "churn-predictor")
    assert code == 0, out
    assert "v3" in out
    assert "auc=0.8" in out
    assert "horizon_days=90" in out


def test_compare_shows_deltas(project: Project) -> None:
    code, out = run(project, "compare", "churn-predictor", "challenger", "3")
    assert code == 0, out
    assert "v1 vs v3" in out
    assert "-0.3000" in out  # auc 0.8 -> 0.5


def test_unknown_model_and_version_are_user_errors(project: Project) -> None:
    code, out = run(project, "show", "nope")
    assert code == 2
    assert "churn-predictor" in out  # lists what is registered
    code, out = run(project, "compare", "churn-predictor", "1", "9")
    assert code == 2
    assert "no such version" in out


def test_history_lists_observed_aliases(project: Project) -> None:
    code, out = run(project, "history", "churn-predictor")
    assert code == 0, out
    assert "challenger" in out
    assert "observed" in out


def test_rollback_cli_restores_and_audits(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    monkeypatch.setenv("TAGSMITH_USER", "olga")
    registry = project.registry()
    for version in ("1", "2"):
        current = registry.alias_version("churn-predictor", "champion")
        registry.move_alias(
            "churn-predictor", "champion", version, expected=current, actor="ana", action="promote"
        )
    code, out = run(project, "rollback", "churn-predictor", "--reason", "v2 misbehaves")
    assert code == 0, out
    assert "from v2 to v1" in out
    assert registry.alias_version("churn-predictor", "champion") == "1"
    log = project.audit_log()  # keyed, with the key outside the project
    assert log.verify().ok
    entry = log.entries()[-1]
    assert (entry["action"], entry["actor"]) == ("models.rollback", "olga")
    assert entry["extra"]["reason"] == "v2 misbehaves"
    code, out = run(project, "history", "churn-predictor", "--alias", "champion")
    assert code == 0, out
    assert "v2 misbehaves" in out
    assert "rollback" in out
    assert datetime.now(UTC).strftime("%Y-%m-%d") in out
    code, out = run(project, "rollback", "churn-predictor")
    assert code == 2
    assert "first recorded champion" in out
