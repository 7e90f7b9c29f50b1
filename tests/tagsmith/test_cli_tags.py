"""``tagsmith tags validate|list|describe|plan|apply`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from features.build import build_features
from features.store import FactStore
from tags.catalogue import Catalogue
from tags.engine import evaluate_tags
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
    assert "type-check against the" in out


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


@pytest.fixture(scope="module")
def project_with_facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 400 synthetic customers imported into the fact store."""
    root = tmp_path_factory.mktemp("facts_project")
    runner = CliRunner()
    steps = [
        ["init"],
        ["data", "generate", "--customers", "400", "--seed", "3", "--out", str(root / "raw")],
        [
            "facts",
            "import",
            "--customers",
            str(root / "raw" / "customers.csv"),
            "--events",
            str(root / "raw" / "events.csv"),
        ],
    ]
    for step in steps:
        result = runner.invoke(main, ["--project", str(root), *step])
        assert result.exit_code == 0, result.output
    return root


def test_evaluate_prints_value_sizes_matching_the_engine(project_with_facts: Path) -> None:
    runner = CliRunner()
    code, out = run(runner, project_with_facts, "evaluate", "--as-of", "2024-06-01")
    assert code == 0, out
    assert "Tags as of 2024-06-01 00:00 UTC" in out
    store = FactStore(project_with_facts / "data" / "facts")
    customers, events = store.load_customers(), store.load_events()
    as_of = pd.Timestamp("2024-06-01", tz="UTC")
    frame = build_features(customers, events, as_of=as_of)
    catalogue = Catalogue.load(project_with_facts / "catalogue")
    long = evaluate_tags(frame, events, catalogue, as_of=as_of)
    sizes = long.groupby(["tag_id", "value"], observed=True).size()
    lines = {tuple(line.split()[:3]) for line in out.splitlines()}
    for (tag_id, value), n in sizes.items():
        assert (tag_id, value, f"{n:,}") in lines
    code, out = run(runner, project_with_facts, "evaluate", "--tag", "old_customer")
    assert code == 0, out
    assert "rfm_segment" not in out
    assert "old_customer" in out


def test_backtest_reports_each_date(project_with_facts: Path) -> None:
    runner = CliRunner()
    code, out = run(
        runner,
        project_with_facts,
        "backtest",
        "lifecycle_stage",
        "--value",
        "churned",
        "--from",
        "2024-01-01",
        "--to",
        "2024-07-01",
        "--every",
        "90d",
        "--outcome",
        "no_purchase_90d",
    )
    assert code == 0, out
    assert "Backtest of lifecycle_stage = churned against no_purchase_90d" in out
    dates = [line.split()[0] for line in out.splitlines() if line.startswith("2024-")]
    assert dates == ["2024-01-01", "2024-03-31", "2024-06-29"]
    assert "Mean over" in out
    code, out = run(
        runner,
        project_with_facts,
        "backtest",
        "lifecycle_stage",
        "--from",
        "2024-01-01",
        "--to",
        "2024-07-01",
        "--outcome",
        "no_purchase_90d",
    )
    assert code == 2
    assert "--value" in out
    code, out = run(
        runner,
        project_with_facts,
        "backtest",
        "old_customer",
        "--from",
        "2024-01-01",
        "--to",
        "2024-07-01",
        "--outcome",
        "no_purchse_90d",
    )
    assert code == 2
    assert "Did you mean 'purchase'?" in out


def test_validate_type_checks_rules_against_the_feature_spec(tmp_path: Path) -> None:
    runner, project = _init(tmp_path)
    path = project / "catalogue" / "lifecycle.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tags"][1]["rule"] = "frequency_order >= 3"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run(runner, project, "validate")
    assert code == 2
    assert "tag 'old_customer'" in out
    assert "Did you mean 'frequency_orders'" in out
