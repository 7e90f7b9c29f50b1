"""Parity: ``predict --engine spark`` scores the same customers with the same scores as
the local ``population_scores``, at two dates."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.champions import ChampionPredictor
from scoring.loading import ScoringModel
from tagsmith.cli.train import PREDICTION_COLUMNS, population_scores
from tagsmith.project import Project
from tagsmith.spark_engine import score_population
from tests.spark.conftest import DATES

pytestmark = pytest.mark.xdist_group("spark")


@pytest.mark.parametrize("date", DATES)
def test_predict_on_spark_matches_local(
    spark_session: object,
    generated_project: Path,
    predictors: list[ChampionPredictor],
    tmp_path: Path,
    date: str,
) -> None:
    project = Project.load(generated_project)
    champion = predictors[0].model
    model = ScoringModel(champion.booster, champion.contract, "test")
    target = champion.contract.target
    column = PREDICTION_COLUMNS[target]
    stamp = pd.Timestamp(date, tz="UTC")
    store = project.fact_store()
    local = population_scores(
        model,
        store.load_customers(),
        store.load_events(),
        as_of=stamp,
        spec=project.feature_spec(),
        label="churn-predictor/1",
    )
    dtypes = {
        "customer_id": "string",
        column: "float64",
        "model_name": "string",
        "model_version": "string",
        "horizon_days": "int64",
        "as_of": "datetime64[us, UTC]",
    }
    score = functools.partial(
        population_scores,
        model,
        as_of=stamp,
        spec=project.feature_spec(),
        label="churn-predictor/1",
    )
    out = tmp_path / "scores.parquet"
    stats = score_population(project, score, dtypes, str(out), column=column)
    spark = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
    local = local.sort_values("customer_id", ignore_index=True)
    assert len(local) > 0
    assert stats["rows"] == len(local)
    assert spark["customer_id"].astype(str).tolist() == local["customer_id"].astype(str).tolist()
    np.testing.assert_allclose(spark[column], local[column], rtol=1e-9)
    for name in ("model_name", "model_version", "horizon_days"):
        assert spark[name].astype(str).tolist() == local[name].astype(str).tolist(), name
    assert (pd.to_datetime(spark["as_of"], utc=True) == stamp).all()
    assert stats["mean"] == pytest.approx(float(local[column].mean()), rel=1e-9)
