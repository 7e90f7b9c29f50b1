"""``tagsmith tags validate|list|describe|plan|apply`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from tagsmith.cli import main


def _init(tmp_path: Path) -> tuple[CliRunner, Path]:
    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(tmp_path), "init"])
    assert result.exit_code == 0, result.output
    return runner, tmp_path


def run(runner: CliRunner, project: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(main, ["--project", str(project), "tags", *args])
    return result.exit_code, result.output


def test_init_copies_the_standard_library(tmp_path: Path) -> None:
    runner, project = _init(tmp_path)
    assert (project / "catalogue" / "value.yaml").is_file()
    code, out = run(runner, project, "validate")
    assert code == 0, out
    assert "Catalogue OK: 12 tags (12 active)" in out


def test_list_and_describe(tmp_path: Path) -> None:
    runner, project = _init(tmp_path)
    code, out = run(runner, project, "list", "--category", "lifecycle")
    assert code == 0, out
    assert "lifecycle_stage" in out
    assert "old_customer" in out
    assert "rfm_segment" not in out
    code, out = run(runner, project, "list", "--category", "lifecycel")
    assert code == 2
    assert "Did you mean 'lifecycle'?" in out
    code, out = run(runner, project, "describe", "rfm_segment")
    assert code == 0, out
    assert "重要价值客户 important value" in out
    assert "median(recency_days)" in out
    code, out = run(runner, project, "describe", "rfm")
    assert code == 2
    assert "rfm_segment" in out


def test_validate_reports_file_tag_and_caret(tmp_path: Path) -> None:
    runner, project = _init(tmp_path)
    path = project / "catalogue" / "lifecycle.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tags"][1]["rule"] = "frequency_orders >= 3 andd x"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(runner, project, "validate")
    assert code == 2
    assert str(path) in out
    assert "tag 'old_customer'" in out
    assert "frequency_orders >= 3 andd x" in out
    assert "^" in out


def test_plan_apply_cycle(tmp_path: Path) -> None:
    runner, project = _init(tmp_path)
    code, out = run(runner, project, "plan")
    assert code == 0, out
    assert "+ rfm_segment (new, active, v1)" in out
    code, out = run(runner, project, "apply")
    assert code == 0, out
    assert "Applied catalogue version 1 (12 tags)" in out
    assert (project / "data" / "catalogue_versions" / "v0001.json").is_file()
    code, out = run(runner, project, "plan")
    assert "No changes" in out
    # Editing a rule without bumping the version: plan flags it, apply refuses.
    path = project / "catalogue" / "lifecycle.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tags"][1]["rule"] = "frequency_orders >= 4"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(runner, project, "plan")
    assert code == 1
    assert "~ old_customer (same version): rule" in out
    assert "expected version 2" in out
    code, out = run(runner, project, "apply")
    assert code == 2
    assert "cannot be applied" in out
    data["tags"][1]["version"] = 2
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(runner, project, "apply")
    assert code == 0, out
    assert "Applied catalogue version 2" in out
