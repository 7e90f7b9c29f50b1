"""A generated project with a rule-tag snapshot, built once with the project's commands."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from click.testing import CliRunner

from tags.store import TagStore
from tagsmith.cli import main
from tagsmith.project import Project

AS_OF = pd.Timestamp("2024-10-01", tz="UTC")
EARLIER = pd.Timestamp("2024-07-01", tz="UTC")


@dataclass
class RuleProject:
    project: Project
    snapshot: pd.DataFrame


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def rule_project(tmp_path_factory: pytest.TempPathFactory) -> RuleProject:
    """init, generate 300 customers, import, and tag runs at two dates (rule tags only)."""
    root = tmp_path_factory.mktemp("explain-project")
    base = ["--project", str(root)]
    invoke([*base, "init"])
    invoke(
        [*base, "data", "generate", "--customers", "300", "--seed", "5", "--out", str(root / "raw")]
    )
    raw = root / "raw"
    invoke(
        [
            *base,
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ]
    )
    for day in (EARLIER, AS_OF):
        invoke([*base, "tags", "run", "--role", "admin", "--as-of", day.date().isoformat()])
    project = Project.load(root)
    store = TagStore(project.tag_store_path)
    return RuleProject(project=project, snapshot=store.snapshot(AS_OF))
