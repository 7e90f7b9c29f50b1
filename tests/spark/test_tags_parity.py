"""Parity: ``tags run --engine spark`` stores the same rule tags (population rules
included) and predicted tags as the local engine, for every customer, at two dates,
and 1 or 7 partitions give the same long table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.batch import run_tagging
from scoring.champions import ChampionPredictor
from spark.config import SparkConfig
from spark.thresholds import aggregate_tags
from tags.store import TagStore
from tagsmith.project import Project
from tagsmith.spark_engine import SparkTagging, output_uri, read_long_table
from tests.spark.conftest import DATES

pytestmark = pytest.mark.xdist_group("spark")

KEY = ["customer_id", "tag_id"]


def assert_same_tags(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same (customer, tag) rows, same values and versions; scores to 1e-9."""
    columns = ["customer_id", "tag_id", "value", "source", "version"]
    local = local.astype({c: "string" for c in columns}).sort_values(KEY, ignore_index=True)
    spark = spark.astype({c: "string" for c in columns}).sort_values(KEY, ignore_index=True)
    assert len(local) > 0
    for name in columns:
        assert spark[name].tolist() == local[name].tolist(), name
    np.testing.assert_allclose(
        spark["score"].to_numpy(dtype="float64", na_value=np.nan),
        local["score"].to_numpy(dtype="float64", na_value=np.nan),
        rtol=1e-9,
        equal_nan=True,
    )


# The first date in 1 and in 7 partitions (so both give the local engine's table), the
# second with the default partitioning.
@pytest.mark.parametrize(("date", "partitions"), [(DATES[0], 1), (DATES[0], 7), (DATES[1], None)])
def test_tags_run_on_spark_matches_local(
    spark_session: object,
    generated_project: Path,
    predictors: list[ChampionPredictor],
    tmp_path: Path,
    date: str,
    partitions: int | None,
) -> None:
    loaded = Project.load(generated_project)
    spark_config = SparkConfig(partitions=partitions)
    project = Project(loaded.root, loaded.config.model_copy(update={"spark": spark_config}))
    catalogue = project.catalogue()
    assert set(aggregate_tags(catalogue)) >= {
        "rfm_segment",
        "value_tier",
        "recent_big_spender",
        "spend_gap_high",
        "busy_browser",
    }
    runs = {}
    spark_engine = SparkTagging(project)
    for engine in ("local", "spark"):
        store = TagStore(tmp_path / f"{engine}.duckdb")
        result = run_tagging(
            facts=project.facts(),
            catalogue=catalogue,
            store=store,
            as_of=date,
            spec=project.feature_spec(),
            predictors=predictors,
            engine=spark_engine if engine == "spark" else None,
        )
        runs[engine] = (store, result)
    (local_store, local), (spark_store, spark) = runs["local"], runs["spark"]
    assert spark.run.n_customers == local.run.n_customers
    assert spark.run.fingerprint == local.run.fingerprint
    assert_same_tags(local_store.snapshot(date), spark_store.snapshot(date))
    snapshot = spark_store.snapshot(date)
    assert set(snapshot["source"].astype(str)) == {"rule", "model"}
    per_tag = snapshot["tag_id"].astype(str).value_counts()
    for tag in ("rfm_segment", "value_tier", "recent_big_spender", "spend_gap_high"):
        assert per_tag.get(tag, 0) > 0, tag
    # The population thresholds recorded with the run: the same numbers.
    local_t = local_store.run_info(date).meta["thresholds"]
    spark_t = spark_store.run_info(date).meta["thresholds"]
    assert spark_t.keys() == local_t.keys()
    for tag, values in local_t.items():
        assert spark_t[tag].keys() == values.keys()
        for text, value in values.items():
            assert spark_t[tag][text] == pytest.approx(value, rel=1e-9, nan_ok=True), text
    assert spark_store.run_info(date).meta["engine"] == "spark"
    assert spark_engine.last is not None
    if partitions is not None:
        assert spark_engine.last.buckets == partitions
        uri = output_uri(project, "tags", f"as_of={date}")
        assert_same_tags(local_store.snapshot(date), read_long_table(spark_session, uri))  # type: ignore[arg-type]
