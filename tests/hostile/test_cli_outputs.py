"""Hostile finding 14-1: an output path never destroys project data or an existing file.

``tags export --out data/facts/events.parquet`` used to overwrite the fact store (the
next ``tags run`` failed while ``facts summary`` still reported the old counts). Every
command that writes a user-named file now goes through :func:`tagsmith.outputs.check_output`:
paths inside the project's stores are refused, an existing file needs ``--overwrite``,
and the write goes to a temporary sibling renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.hostile.cli_helpers import make_project, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def _store_bytes(root: Path) -> dict[str, bytes]:
    data = root / "data" / "facts"
    return {str(p.relative_to(root)): p.read_bytes() for p in data.rglob("*") if p.is_file()}


# Every command with a file output, as (argv before --out, --out value is appended).
WRITERS = [
    ("tags", "export"),
    ("tags", "diff", "--from", "2024-01-31", "--to", "2024-01-31"),
    ("tags", "report"),
    ("audience", "select", "old_customer"),
]


@pytest.mark.parametrize("argv", WRITERS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize(
    "target", ["data/facts/events.parquet", "data/tags.csv", "catalogue/x.csv", "triggers/x.csv"]
)
def test_outputs_inside_the_project_stores_are_refused(
    project: Path, argv: tuple[str, ...], target: str
) -> None:
    before = _store_bytes(project)
    config = (project / "tagsmith.yaml").read_bytes()
    out = project / target
    if argv[1] == "report":
        out = out.with_suffix(".html")
    result = run(project, *argv, "--out", str(out), "--overwrite", role="marketing")
    assert result.exit_code == 2, result.output
    assert "outside the project's stores" in result.output
    assert "Traceback" not in result.output
    assert _store_bytes(project) == before
    assert (project / "tagsmith.yaml").read_bytes() == config
    # The fact store still loads: the next tags run is not broken.
    assert run(project, "facts", "summary").exit_code == 0


@pytest.mark.parametrize("name", ["tagsmith.yaml", "policy.yaml", "features.yaml"])
def test_report_over_a_project_file_is_refused(project: Path, name: str) -> None:
    before = (project / name).read_bytes() if (project / name).exists() else None
    result = run(project, "tags", "report", "--out", str(project / name), "--overwrite")
    assert result.exit_code == 2, result.output
    assert "outside the project's stores" in result.output
    after = (project / name).read_bytes() if (project / name).exists() else None
    assert after == before


def test_export_over_the_fact_store_keeps_it_readable(project: Path) -> None:
    # The finding as reported, and the store checked afterwards.
    events = project / "data" / "facts" / "events.parquet"
    assert events.exists()
    rows = len(pd.read_parquet(events))
    result = run(project, "tags", "export", "--out", str(events), role="marketing")
    assert result.exit_code == 2
    assert len(pd.read_parquet(events)) == rows


@pytest.mark.parametrize("argv", WRITERS, ids=lambda a: " ".join(a[:2]))
def test_existing_file_needs_overwrite(
    project: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    out = tmp_path / ("mine.html" if argv[1] == "report" else "mine.csv")
    out.write_text("keep me\n", encoding="utf-8")
    refused = run(project, *argv, "--out", str(out), role="marketing")
    assert refused.exit_code == 2, refused.output
    assert "exists; pass --overwrite" in refused.output
    assert out.read_text(encoding="utf-8") == "keep me\n"
    replaced = run(project, *argv, "--out", str(out), "--overwrite", role="marketing")
    assert replaced.exit_code == 0, replaced.output
    assert out.read_text(encoding="utf-8") != "keep me\n"
    # Written through a temporary sibling that does not outlive the command.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_generate_refuses_the_project_data_and_existing_files(
    project: Path, tmp_path: Path
) -> None:
    inside = run(project, "generate", "--customers", "5", "--out", str(project / "data" / "x"))
    assert inside.exit_code == 2, inside.output
    assert "outside the project's stores" in inside.output
    out = tmp_path / "synthetic"
    first = run(project, "generate", "--customers", "5", "--out", str(out))
    assert first.exit_code == 0, first.output
    before = (out / "events.csv").read_bytes()
    again = run(project, "generate", "--customers", "5", "--seed", "1", "--out", str(out))
    assert again.exit_code == 2
    assert "events.csv" in again.output or "customers.csv" in again.output
    assert (out / "events.csv").read_bytes() == before
    forced = run(
        project, "generate", "--customers", "5", "--seed", "1", "--out", str(out), "--overwrite"
    )
    assert forced.exit_code == 0, forced.output


def test_store_backup_refuses_the_project_folder(project: Path) -> None:
    result = run(project, "store", "backup", str(project / "data" / "bk"))
    assert result.exit_code == 2
    assert "outside the project" in result.output
