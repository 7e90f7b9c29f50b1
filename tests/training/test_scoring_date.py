"""The scoring date's features built in the training pass: the same rows as a build of
their own (the oracle), and training rows unchanged by the extra date; the blend's
offset anchored on a sample of a large population."""

from __future__ import annotations

import pandas as pd
import pytest

import training.blend as blend_module
from features.build import build_features
from features.spec import default_spec
from scoring.btyd import btyd_prediction
from scoring.contract import model_matrix, score_frame
from synthetic.purchase_log import purchase_log
from training.blend import scoring_population
from training.config import TrainingConfig
from training.labels import plan_training
from training.pipeline import train_predictor
from training.scoring_date import AlsoAtScoringDate, scoring_date
from training.training_set import build_training_set


def test_matches_a_separate_build_and_leaves_the_training_rows_alone() -> None:
    data = purchase_log(800, start="2023-01-01", end="2023-12-31", seed=3)
    customers, events = data.customers, data.events
    spec = default_spec()
    config = TrainingConfig(horizon_days=90)
    purchases = events.loc[events["event_type"] == "purchase", "occurred_at"]
    plan = plan_training(
        purchases.min(),
        events["occurred_at"].max(),
        horizon_days=90,
        n_cutoffs=config.n_cutoffs,
        step_months=config.cutoff_step_months,
        min_history_days=config.min_history_days,
    )
    shared = AlsoAtScoringDate(build_features, scoring_date(events))
    both = build_training_set(customers, events, plan=plan, feature_builder=shared, spec=spec)
    alone = build_training_set(
        customers, events, plan=plan, feature_builder=build_features, spec=spec
    )
    pd.testing.assert_frame_equal(both.frame, alone.frame)
    assert both.feature_names == alone.feature_names
    assert both.categorical_levels == alone.categorical_levels
    population = shared.take()
    assert population is not None
    assert shared.take() is None
    separate = scoring_population(customers, events, feature_builder=build_features, spec=spec)
    pd.testing.assert_frame_equal(population, separate)
    assert len(population) == events["customer_id"].nunique()


def test_the_scoring_date_is_the_day_after_the_last_event() -> None:
    events = pd.DataFrame(
        {"occurred_at": pd.to_datetime(["2024-03-01 10:00", "2024-03-09 23:59"], utc=True)}
    )
    assert scoring_date(events) == pd.Timestamp("2024-03-10", tz="UTC")
    naive = events.assign(occurred_at=events["occurred_at"].dt.tz_localize(None))
    assert scoring_date(naive) == pd.Timestamp("2024-03-10", tz="UTC")


def test_a_large_population_anchors_the_offset_on_a_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Capped at 600 of ~2,000 customers here (200k at scale): the value offset set on the
    # sample still makes the whole population's total close to the Pareto/NBD +
    # Gamma-Gamma's expected total.
    monkeypatch.setattr(blend_module, "MAX_POPULATION_ROWS", 600)
    data = purchase_log(2_000, start="2023-01-01", end="2023-12-31", seed=4)
    r = train_predictor(
        data.customers,
        data.events,
        target="value",
        config=TrainingConfig(horizon_days=90, num_boost_round=40, learning_rate=0.1),
        feature_builder=build_features,
        spec=default_spec(),
        n_jobs=1,
    )
    cand = next(c for c in r.candidates if c.name == "blend")
    contract = cand.contract(r.contract)
    assert contract.blend is not None
    pop = scoring_population(
        data.customers, data.events, feature_builder=build_features, spec=default_spec()
    )
    assert len(pop) > 600
    got = score_frame(r.estimator.booster_, pop, contract)
    x = model_matrix(pop, contract)
    btyd = btyd_prediction(contract.blend, "value", 90, contract.feature_names, x)
    assert got.sum() == pytest.approx(btyd.sum(), rel=0.05)
