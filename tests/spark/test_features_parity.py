"""Parity: ``features build --engine spark`` equals the local feature builder for every
customer, at two dates, whatever the number of partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spark.features import as_of_label, build_features_spark
from tagsmith.project import Project
from tagsmith.spark_engine import output_uri, project_facts
from tests.spark.conftest import DATES, local_features, run_cli

# Every Spark test runs in one xdist worker, so one JVM serves them all.
pytestmark = pytest.mark.xdist_group("spark")


def assert_same_frame(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same customers, same columns; integers and categories exactly, floats to 1e-9."""
    assert list(spark.columns) == list(local.columns)
    local = local.sort_values("customer_id", ignore_index=True)
    spark = spark.sort_values("customer_id", ignore_index=True)
    assert len(local) > 0
    assert spark["customer_id"].astype(str).tolist() == local["customer_id"].astype(str).tolist()
    for name in local.columns:
        want, got = local[name], spark[name]
        if pd.api.types.is_float_dtype(want.dtype):
            np.testing.assert_allclose(
                got.to_numpy(dtype="float64", na_value=np.nan),
                want.to_numpy(dtype="float64", na_value=np.nan),
                rtol=1e-9,
                atol=0,
                equal_nan=True,
                err_msg=name,
            )
        elif pd.api.types.is_bool_dtype(want.dtype) or pd.api.types.is_integer_dtype(want.dtype):
            assert got.tolist() == want.tolist(), name
        else:  # strings and categories: the same text, the same nulls
            assert got.astype("string").tolist() == want.astype("string").tolist(), name


def read_snapshot(folder: str) -> pd.DataFrame:
    return pd.read_parquet(folder)


def test_cli_features_build_on_spark_matches_local(
    spark_session: object, generated_project: Path
) -> None:
    out = run_cli(
        generated_project,
        "features",
        "build",
        "--engine",
        "spark",
        "--master",
        "local[2]",
        *[a for d in DATES for a in ("--as-of", d)],
    )
    assert "engine spark" in out
    project = Project.load(generated_project)
    for date in DATES:
        folder = Path(output_uri(project, "features", f"as_of={date}"))
        assert (folder / "_tagsmith.json").is_file()
        assert_same_frame(local_features(project, date), read_snapshot(str(folder)))


@pytest.mark.parametrize("buckets", [1, 7])
def test_partition_count_does_not_change_features(
    spark_session: object, generated_project: Path, tmp_path: Path, buckets: int
) -> None:
    project = Project.load(generated_project)
    facts = project_facts(project, spark_session)  # type: ignore[arg-type]
    cutoff = pd.Timestamp(DATES[0], tz="UTC")
    written = build_features_spark(
        spark_session,  # type: ignore[arg-type]
        facts,
        spec=project.feature_spec(),
        cutoffs=[cutoff],
        output=str(tmp_path / "features"),
        buckets=buckets,
        lineage={},
    )
    assert [w.as_of for w in written] == [cutoff]
    local = local_features(project, DATES[0])
    assert written[0].rows == len(local)
    snapshot = read_snapshot(str(tmp_path / "features" / f"as_of={as_of_label(cutoff)}"))
    assert_same_frame(local, snapshot)
