"""``--format json``: one JSON document on stdout, messages on stderr, the same shape rules.

A list command prints an array of objects; every other command one object. Each case
parses stdout alone (what ``tagsmith ... --format json | jq`` sees).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tags.store import TagStore
from tagsmith.cli import main
from tests.tags.conftest import long_table
from tests.tagsmith.test_cli_tagdata import FEB, JAN

# A registry named by the environment (left by another test in this worker) is not this
# project's: unset it, so the project uses its own store.
ENV = {
    "TAGSMITH_USER": "tester",
    "TAGSMITH_ROLE": None,
    "MLFLOW_TRACKING_URI": None,
    "MLFLOW_REGISTRY_URI": None,
}


def _json(root: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--project", str(root), *args, "--format", "json"], env=ENV)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose tag store holds two snapshots (no facts)."""
    root = tmp_path_factory.mktemp("json") / "proj"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    store = TagStore(root / "data" / "tags.duckdb")
    store.write_snapshot(long_table(JAN, "2024-01-31"), as_of="2024-01-31")
    store.write_snapshot(long_table(FEB, "2024-02-29"), as_of="2024-02-29")
    return root


@pytest.fixture(scope="module")
def with_facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 200 generated customers imported (the real generator and importer)."""
    tmp = tmp_path_factory.mktemp("jsonfacts")
    root, raw = tmp / "proj", tmp / "raw"
    runner = CliRunner()
    events = str(raw / "events.csv")
    for argv in (
        ["init"],
        ["data", "generate", "--customers", "200", "--seed", "4", "--out", str(raw)],
        ["facts", "import", "--customers", str(raw / "customers.csv"), "--events", events],
    ):
        result = runner.invoke(main, ["--project", str(root), *argv], env=ENV)
        assert result.exit_code == 0, result.output
    return root


def test_tags_list_is_an_array_of_tags(stored: Path) -> None:
    tags = _json(stored, "tags", "list")
    assert isinstance(tags, list)
    by_id = {t["id"]: t for t in tags}
    assert by_id["lifecycle_stage"]["category"] == "lifecycle"
    assert {"display_name", "source", "value_type", "sensitivity", "status", "version"} <= set(
        by_id["lifecycle_stage"]
    )


def test_tags_describe_is_the_definition(stored: Path) -> None:
    tag = _json(stored, "tags", "describe", "lifecycle_stage")
    assert tag["id"] == "lifecycle_stage"
    assert tag["file"].endswith(".yaml")
    assert tag["rule"] is not None


def test_tags_runs_history_diff_transitions_report(stored: Path, tmp_path: Path) -> None:
    runs = _json(stored, "tags", "runs", "--role", "admin")
    assert [r["as_of"][:10] for r in runs] == ["2024-02-29", "2024-01-31"]
    history = _json(stored, "tags", "history", "c3", "--tag", "lifecycle_stage,rfm_segment")
    assert {(h["tag_id"], h["as_of"][:10], h["value"]) for h in history} >= {
        ("lifecycle_stage", "2024-01-31", "active"),
        ("lifecycle_stage", "2024-02-29", "dormant"),
    }
    assert {h["tag_id"] for h in history} == {"lifecycle_stage", "rfm_segment"}
    diff = _json(stored, "tags", "diff", "--from", "2024-01-31", "--to", "2024-02-29")
    assert diff["from"][:10] == "2024-01-31"
    rows = {(v["tag_id"], v["value"]): v for v in diff["values"]}
    assert rows[("lifecycle_stage", "dormant")]["entered"] == 1
    moves = _json(stored, "tags", "transitions", "lifecycle_stage", "--customer", "c3")
    assert [(c["from_value"], c["to_value"]) for c in moves["changes"]] == [("active", "dormant")]
    report = _json(stored, "tags", "report", "--out", str(tmp_path / "r.html"))
    assert Path(report["out"]).is_file()
    assert report["as_of"][:10] == "2024-02-29"
    assert all(0 <= v["share"] <= 1 for v in report["values"])


def test_export_says_what_it_wrote(stored: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    done = _json(stored, "tags", "export", "--out", str(out), "--tags", "lifecycle_stage")
    assert done == {"out": str(out), "rows": 3, "customers": 3}


def test_tags_evaluate_and_run(with_facts: Path) -> None:
    evaluated = _json(with_facts, "tags", "evaluate", "--tag", "lifecycle_stage")
    assert evaluated["n_customers"] == 200
    assert {v["tag_id"] for v in evaluated["values"]} == {"lifecycle_stage"}
    assert sum(v["customers"] for v in evaluated["values"]) == 200
    # Messages (the missing champion notice, progress) go to stderr, stdout stays JSON.
    run = _json(with_facts, "tags", "run", "--role", "admin", "--as-of", "2024-12-01")
    assert run["as_of"][:10] == "2024-12-01"
    assert run["reused"] is False
    assert run["n_customers"] > 0
    assert any("champion" in note for note in run["notices"])
    assert {t["tag_id"] for t in run["tags"]} >= {"lifecycle_stage", "rfm_segment"}


def test_facts_features_audience_audit_keys(with_facts: Path) -> None:
    # A snapshot to select from (reused when test_tags_evaluate_and_run made it already).
    _json(with_facts, "tags", "run", "--role", "admin", "--as-of", "2024-12-01")
    summary = _json(with_facts, "facts", "summary")
    assert summary["customers"] == 200
    assert summary["imports"][-1]["accepted"] > 0
    features = _json(with_facts, "features", "list")
    assert {"name", "family", "dtype", "unit", "description"} <= set(features[0])
    one = _json(with_facts, "features", "show", "C0000001")
    assert set(one["features"]) == {f["name"] for f in features}
    picked = _json(with_facts, "audience", "select", "lifecycle_stage = 'active'")
    assert picked["tags"] == ["lifecycle_stage"]
    assert isinstance(picked["size"], int)
    assert "customers" not in picked  # ids only ever go to --out
    assert _json(with_facts, "audience", "list") == []
    entries = _json(with_facts, "audit", "show", "--role", "admin")
    assert "audience" in {e["action"] for e in entries}
    assert _json(with_facts, "serve", "keys", "list") == []
    assert _json(with_facts, "models", "list") == []
