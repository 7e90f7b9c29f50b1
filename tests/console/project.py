"""A small real project for console tests: two tagging runs, a champion and a challenger.

Built with the project's own commands (``tests.serving.project_fixture.build``: init,
generate, facts import, tiny LightGBM champions, ``tags run``), plus an earlier tagging
run (so tags have a history), a challenger identical to the churn champion (so a
promotion passes its gates deterministically) and one API key per role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from tagsmith.cli import main
from tagsmith.project import Project
from tests.scoring.registry import register_booster
from tests.serving.project_fixture import AS_OF, build, train

EARLIER = "2024-10-01"
ROLES = ("admin", "marketing", "service", "executive")


@dataclass
class ConsoleProject:
    project: Project
    keys: dict[str, str]
    customer_ids: list[str]


def build_console_project(root: Path, n_customers: int = 400) -> ConsoleProject:
    served = build(root, n_customers=n_customers)
    project = served.project
    result = CliRunner().invoke(
        main, ["--project", str(root), "tags", "run", "--role", "admin", "--as-of", EARLIER]
    )
    assert result.exit_code == 0, result.output
    booster, contract = train(served.features, "churn")  # the champion's twin
    register_booster(
        project.mlflow_tracking_uri,
        project.mlflow_artifacts_dir,
        "churn-predictor",
        booster,
        contract,
        alias="challenger",
    )
    keys = {role: project.api_keys().add(f"{role}-key", role) for role in ROLES}
    ids = sorted(served.tags["customer_id"].astype(str).unique())
    assert AS_OF is not None
    return ConsoleProject(project=Project.load(root), keys=keys, customer_ids=ids)
