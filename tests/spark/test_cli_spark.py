"""The Spark engine through the CLI: facts outside the fact store, bad facts, and the
long table left in Parquet (``spark.tag_store: parquet``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from spark.config import SparkConfig
from tagsmith.cli import main
from tagsmith.config import CONFIG_FILENAME, dump_config, load_config
from tagsmith.project import Project
from tests.spark.conftest import DATES

pytestmark = pytest.mark.xdist_group("spark")


def _copy(project: Path, tmp_path: Path, **spark: object) -> Path:
    """A copy of the project with these ``spark:`` settings."""
    root = tmp_path / "p"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("spark", "*.duckdb*"))
    config = load_config(root / CONFIG_FILENAME)
    config = config.model_copy(update={"spark": SparkConfig(**spark)})  # type: ignore[arg-type]
    (root / CONFIG_FILENAME).write_text(dump_config(config), encoding="utf-8")
    return root


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def test_external_facts_are_not_recorded_in_the_tag_store(
    generated_project: Path, tmp_path: Path
) -> None:
    raw = generated_project.parent / "raw"
    root = _copy(
        generated_project,
        tmp_path,
        customers_path=str(raw / "customers.parquet"),
        events_path=str(raw / "events.parquet"),
    )
    code, out = _run(root, "tags", "run", "--engine", "spark", "--role", "admin")
    assert code == 2
    assert "spark.tag_store: parquet" in " ".join(out.split())
    assert "Traceback" not in out


def test_a_missing_event_column_names_the_file(
    spark_session: object, generated_project: Path, tmp_path: Path
) -> None:
    raw = generated_project.parent / "raw"
    broken = tmp_path / "events.parquet"
    pd.read_parquet(raw / "events.parquet").drop(columns=["amount"]).to_parquet(broken)
    root = _copy(generated_project, tmp_path, events_path=str(broken))
    code, out = _run(root, "features", "build", "--engine", "spark", "--as-of", DATES[0])
    text = " ".join(out.split())
    assert code == 2, out
    assert str(broken) in out.replace("\n", "")
    assert "missing ['amount']" in text
    assert "Traceback" not in out


def test_parquet_tag_store_leaves_the_store_alone(
    spark_session: object, generated_project: Path, tmp_path: Path
) -> None:
    raw = generated_project.parent / "raw"
    root = _copy(
        generated_project,
        tmp_path,
        customers_path=str(raw / "customers.parquet"),
        events_path=str(raw / "events.parquet"),
        tag_store="parquet",
    )
    code, out = _run(root, "tags", "run", "--engine", "spark", "--role", "admin")
    assert code == 0, out
    text = " ".join(out.split())
    assert "not recorded in the tag store" in text
    project = Project.load(root)
    assert not project.tag_store().exists()
    # The default as-of: the day after the last event of the external events file.
    last = pd.read_parquet(raw / "events.parquet", columns=["occurred_at"])["occurred_at"].max()
    day = (last.tz_convert("UTC").normalize() + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    folder = project.data_dir / "spark" / "tags" / f"as_of={day}"
    long = pd.read_parquet(folder)
    assert {"rfm_segment", "value_tier", "lifecycle_stage"} <= set(long["tag_id"].astype(str))
    n = int(
        pd.read_parquet(raw / "customers.parquet")["signup_at"]
        .lt(pd.Timestamp(day, tz="UTC"))
        .sum()
    )
    assert f"{n:,} customers tagged" in text
