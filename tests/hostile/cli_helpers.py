"""A small governed project for the CLI findings: facts imported, two tag snapshots."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from tags.store import TagStore
from tagsmith.cli import main
from tests.tags.conftest import long_table

FACTS = Path(__file__).parents[1] / "data" / "facts"

SNAPSHOT = [
    ("c1", "lifecycle_stage", "new"),
    ("c2", "lifecycle_stage", "active"),
    ("c1", "old_customer", "true"),
]


def run(root: Path, *args: str, role: str = "admin") -> Result:
    """``tagsmith --project ROOT ARGS`` under ``role``, exceptions left to the CLI."""
    return CliRunner().invoke(
        main,
        ["--project", str(root), *args],
        env={"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": role},
    )


def make_project(root: Path) -> Path:
    """``init`` + the shared facts imported + one tag snapshot."""
    assert run(root, "init").exit_code == 0
    imported = run(
        root,
        "facts",
        "import",
        "--customers",
        str(FACTS / "customers.csv"),
        "--events",
        str(FACTS / "events.csv"),
    )
    assert imported.exit_code == 0, imported.output
    TagStore(root / "data" / "tags.duckdb").write_snapshot(
        long_table(SNAPSHOT, "2024-01-31"), as_of="2024-01-31"
    )
    return root
