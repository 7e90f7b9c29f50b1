from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from serving.keys import ApiKeyStore
from tagsmith.cli import main


def _project(tmp_path: Path) -> Path:
    assert CliRunner().invoke(main, ["--project", str(tmp_path), "init"]).exit_code == 0
    return tmp_path


def test_keys_add_prints_a_working_key_once(tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = CliRunner().invoke(
        main, ["--project", str(root), "serve", "keys", "add", "crm", "--role", "marketing"]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    found = ApiKeyStore(root / "data" / "api_keys.json").verify(key)
    assert found is not None
    assert found.role == "marketing"
    assert key not in (root / "data" / "api_keys.json").read_text()


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    root = _project(tmp_path)
    runner = CliRunner()
    base = ["--project", str(root), "serve", "keys"]
    assert runner.invoke(main, [*base, "add", "crm", "--role", "marketing"]).exit_code == 0
    listed = runner.invoke(main, [*base, "list"])
    assert "crm" in listed.output
    assert "marketing" in listed.output
    assert runner.invoke(main, [*base, "revoke", "crm"]).exit_code == 0
    again = runner.invoke(main, [*base, "revoke", "crm"])
    assert again.exit_code == 2
    assert "stored key" in again.output


def test_keys_add_refuses_a_role_outside_the_policy(tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = CliRunner().invoke(
        main, ["--project", str(root), "serve", "keys", "add", "x", "--role", "wizard"]
    )
    assert result.exit_code == 2
    assert "wizard" in result.output
    assert "marketing" in result.output


def test_tags_run_without_registry_notes_skipped_models(tmp_path: Path) -> None:
    from tagsmith.champions import champion_predictors
    from tagsmith.project import Project

    project = Project.load(_project(tmp_path))
    predictors, notices = champion_predictors(project)
    assert predictors == []
    assert any("churn_risk" in n for n in notices)
    assert any("predicted_value" in n for n in notices)
