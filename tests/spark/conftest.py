"""One Spark session (local[2], 127.0.0.1, no UI, temp dirs) and one generated project
for every Spark test of a pytest process; the JVM is stopped by its PID at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import pytest
from click.testing import CliRunner

from features.events import FEATURE_EVENT_COLUMNS, prepare_events
from scoring.champions import ChampionModel, ChampionPredictor, ModelTag
from scoring.contract import ModelContract, model_matrix
from spark.config import SparkConfig
from spark.session import start_session
from tagsmith.cli import main
from tagsmith.project import Project

N_CUSTOMERS = 1200
# Two as-of dates: one mid-history, one the day after the last event.
DATES = ("2024-03-01", "2025-01-01")


POPULATION_TAGS = """
tags:
  - id: recent_big_spender
    display_name: 价值_近期高消费
    category: value
    description: Among customers at most the median recency, spend above their 75th percentile.
    owner: spark-tests
    source: rule
    value_type: boolean
    sensitivity: internal
    refresh: daily
    status: active
    version: 1
    rule:
      scope: recency_days <= median(recency_days)
      when: monetary_total > quantile(monetary_total, 0.75)
  - id: spend_gap_high
    display_name: 价值_消费差距
    category: value
    description: Distance of spend from the median, above its own median.
    owner: spark-tests
    source: rule
    value_type: boolean
    sensitivity: internal
    refresh: daily
    status: active
    version: 1
    rule:
      scope: not never_purchased
      let:
        gap: abs(monetary_total - median(monetary_total))
      when: gap > median(gap)
  - id: busy_browser
    display_name: 行为_高频浏览
    category: behaviour
    description: Browsed more than the average customer in the last 90 days.
    owner: spark-tests
    source: rule
    value_type: boolean
    sensitivity: internal
    refresh: daily
    status: active
    version: 1
    rule:
      when: count(browse, last 90 days) > mean(count(browse, last 90 days))
"""


def run_cli(project: Path, *args: str) -> str:
    """Run ``tagsmith --project PROJECT ARGS`` and return its output (must succeed)."""
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pyspark import SparkContext

    scratch = tmp_path_factory.mktemp("spark-local")
    os.environ.setdefault("SPARK_LOCAL_DIRS", str(scratch))
    session = start_session(
        SparkConfig(),
        master="local[2]",
        extra={
            "spark.local.dir": str(scratch),
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "1g",
        },
    )
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    yield session
    session.stop()
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except Exception:
            proc.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None


@pytest.fixture(scope="session")
def generated_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with generated facts imported (two years, N_CUSTOMERS customers)."""
    root = tmp_path_factory.mktemp("spark-project") / "p"
    run_cli(root, "init")
    raw = root.parent / "raw"
    run_cli(
        root,
        "generate",
        "--customers",
        str(N_CUSTOMERS),
        "--seed",
        "3",
        "--format",
        "parquet",
        "--out",
        str(raw),
    )
    # Population rules beyond the standard library: an aggregate inside an aggregate's
    # population (scope) and over a 'let' that is itself relative to a median, so the
    # Spark engine must iterate its global passes; a mean over an event window.
    (root / "catalogue" / "spark_population.yaml").write_text(POPULATION_TAGS, "utf-8")
    run_cli(
        root,
        "facts",
        "import",
        "--customers",
        str(raw / "customers.parquet"),
        "--events",
        str(raw / "events.parquet"),
    )
    return root


@pytest.fixture(scope="session")
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


def local_features(project: Project, date: str) -> pd.DataFrame:
    """The local engine's features of the project's facts as of ``date``."""
    store = project.fact_store()
    prepared = prepare_events(
        store.load_customers(), store.load_events(columns=list(FEATURE_EVENT_COLUMNS))
    )
    return prepared.build_features(pd.Timestamp(date, tz="UTC"), spec=project.feature_spec())
