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
from spark.tagging import window_events
from spark.thresholds import aggregate_tags
from tags.catalogue import Catalogue
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


def test_tags_run_without_population_rules_matches_local(
    spark_session: object,
    generated_project: Path,
    predictors: list[ChampionPredictor],
    tmp_path: Path,
) -> None:
    """Without population rules there is one pass, straight from the partitioned
    events (the other tests go through the kept features and window events)."""
    loaded = Project.load(generated_project)
    project = Project(
        loaded.root, loaded.config.model_copy(update={"spark": SparkConfig(partitions=3)})
    )
    full = project.catalogue()
    dropped = set(aggregate_tags(full))
    catalogue = Catalogue.from_definitions(
        [(t, full.files.get(t.id)) for t in full if t.id not in dropped],
        full.config,
        event_types=full.event_types,
    )
    assert not aggregate_tags(catalogue)
    assert "busy_browser" in dropped
    stores = {}
    for engine in ("local", "spark"):
        store = stores[engine] = TagStore(tmp_path / f"{engine}.duckdb")
        run_tagging(
            facts=project.facts(),
            catalogue=catalogue,
            store=store,
            as_of=DATES[1],
            spec=project.feature_spec(),
            predictors=predictors,
            engine=SparkTagging(project) if engine == "spark" else None,
        )
    snapshot = stores["spark"].snapshot(DATES[1])
    assert_same_tags(stores["local"].snapshot(DATES[1]), snapshot)
    assert set(snapshot["source"].astype(str)) == {"rule", "model"}
    # The standard library's event-window rules (risk tags) ran on this path too.
    assert {"complaint_risk", "browse_churn"} & set(snapshot["tag_id"].astype(str))


def test_window_events_keep_what_windows_read(generated_project: Path) -> None:
    """The events kept for later passes: the types windows count, from the earliest
    window start, before the cutoff; nothing else."""
    project = Project.load(generated_project)
    catalogue = project.catalogue()
    events = project.fact_store().load_events()
    cutoff = pd.Timestamp(DATES[0], tz="UTC")
    kept = window_events(events, catalogue, cutoff)
    assert len(kept) > 0
    assert set(kept["event_type"].astype(str)) <= {"browse", "complaint"}
    assert (kept["occurred_at"] < cutoff).all()
    # busy_browser counts browses of the last 90 days, risk tags the last 90 days of
    # complaints and browses from 54 days ago: nothing earlier than 90 days is kept.
    assert (kept["occurred_at"] >= cutoff - pd.Timedelta(days=90)).all()
    expected = events[
        events["event_type"].astype(str).isin(["browse", "complaint"])
        & (events["occurred_at"] < cutoff)
        & (events["occurred_at"] >= cutoff - pd.Timedelta(days=90))
    ]
    assert len(kept) == len(expected)
