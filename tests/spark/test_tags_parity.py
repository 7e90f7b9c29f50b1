"""Parity: ``tags run --engine spark`` stores the same rule tags (population rules
included) and predicted tags as the local engine, for every customer, at two dates,
and 1 or 7 partitions give the same long table."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from scoring.batch import run_tagging
from scoring.champions import ChampionModel, ChampionPredictor, ModelTag
from scoring.contract import ModelContract, model_matrix
from spark.tagging import run_tags_spark
from spark.thresholds import aggregate_tags
from tags.store import TagStore
from tagsmith.project import Project
from tagsmith.spark_engine import SparkTagging, project_facts, read_long_table
from tests.spark.conftest import DATES
from tests.spark.test_features_parity import local_features

pytestmark = pytest.mark.xdist_group("spark")

KEY = ["customer_id", "tag_id"]


@pytest.fixture(scope="module")
def predictors(generated_project: Path) -> list[ChampionPredictor]:
    """Champions of every catalogued model tag: small boosters on real features."""
    project = Project.load(generated_project)
    frame = local_features(project, DATES[0])
    names = ["recency_days", "frequency_orders", "monetary_total", "region"]
    levels = {"region": sorted(frame["region"].dropna().astype(str).unique().tolist())}
    out = []
    for k, tag in enumerate(project.catalogue().active(sources=("model",))):
        target = "churn" if "churn" in tag.id else "value"
        contract = ModelContract(
            target=target,  # type: ignore[arg-type]
            horizon_days=90,
            feature_names=names,
            categorical_levels=levels,
        )
        x = model_matrix(frame, contract)
        y = (
            (frame["recency_days"].fillna(999) > 60).to_numpy(dtype=float)
            if target == "churn"
            else frame["monetary_total"].to_numpy(dtype=float)
        )
        params = {"objective": "binary" if target == "churn" else "regression"}
        params |= {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5, "seed": k}
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=10)
        model = ChampionModel(str(tag.model), "1", ModelTag.from_definition(tag), contract, booster)
        out.append(ChampionPredictor(model))
    assert out, "the standard catalogue has model tags"
    return out


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


@pytest.mark.parametrize("date", DATES)
def test_tags_run_on_spark_matches_local(
    spark_session: object,
    generated_project: Path,
    predictors: list[ChampionPredictor],
    tmp_path: Path,
    date: str,
) -> None:
    project = Project.load(generated_project)
    catalogue = project.catalogue()
    assert set(aggregate_tags(catalogue)) >= {
        "rfm_segment",
        "value_tier",
        "recent_big_spender",
        "spend_gap_high",
        "busy_browser",
    }
    runs = {}
    for engine in ("local", "spark"):
        store = TagStore(tmp_path / f"{engine}.duckdb")
        result = run_tagging(
            facts=project.facts(),
            catalogue=catalogue,
            store=store,
            as_of=date,
            spec=project.feature_spec(),
            predictors=predictors,
            engine=SparkTagging(project) if engine == "spark" else None,
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


@pytest.mark.parametrize("buckets", [1, 7])
def test_partition_count_does_not_change_tags(
    spark_session: object,
    generated_project: Path,
    predictors: list[ChampionPredictor],
    tmp_path: Path,
    buckets: int,
) -> None:
    project = Project.load(generated_project)
    store = TagStore(tmp_path / "local.duckdb")
    run_tagging(
        facts=project.facts(),
        catalogue=project.catalogue(),
        store=store,
        as_of=DATES[0],
        spec=project.feature_spec(),
        predictors=predictors,
    )
    run = run_tags_spark(
        spark_session,  # type: ignore[arg-type]
        project_facts(project, spark_session),  # type: ignore[arg-type]
        spec=project.feature_spec(),
        catalogue=project.catalogue(),
        cutoff=pd.Timestamp(DATES[0], tz="UTC"),
        predictors=predictors,
        output=str(tmp_path / "tags"),
        buckets=buckets,
    )
    assert run.buckets == buckets
    assert_same_tags(store.snapshot(DATES[0]), read_long_table(spark_session, run.uri))  # type: ignore[arg-type]
