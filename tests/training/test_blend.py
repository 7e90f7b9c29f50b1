"""The blend candidate on a purchase-only log: what it anchors, and that the registered
contract scores exactly as the candidate was chosen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.spec import default_spec
from scoring.btyd import blend_scores, btyd_prediction
from scoring.contract import model_matrix, score_frame
from synthetic.purchase_log import purchase_log
from training.blend import BLEND_WEIGHTS, fit_blend, scoring_date, scoring_population
from training.config import TrainingConfig
from training.evaluation import metrics_for
from training.pipeline import TrainingResult, train_predictor

CONFIG = TrainingConfig(horizon_days=90, num_boost_round=60, learning_rate=0.1)


@pytest.fixture(scope="module")
def log() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = purchase_log(3_000, start="2023-01-01", end="2023-12-31", seed=5)
    return data.customers, data.events


@pytest.fixture(scope="module", params=["churn", "value"])
def result(
    request: pytest.FixtureRequest, log: tuple[pd.DataFrame, pd.DataFrame]
) -> TrainingResult:
    customers, events = log
    return train_predictor(
        customers,
        events,
        target=request.param,
        config=CONFIG,
        feature_builder=build_features,
        spec=default_spec(),
        n_jobs=1,
    )


def test_the_blend_is_a_candidate_with_validation_and_test_metrics(result: TrainingResult) -> None:
    names = [c.name for c in result.candidates]
    assert "blend" in names
    blend = next(c for c in result.candidates if c.name == "blend")
    assert blend.contract_update["blend"].weight in BLEND_WEIGHTS
    metric = "auc" if result.target == "churn" else "normalized_gini"
    assert np.isfinite(blend.validation[metric])
    assert np.isfinite(blend.test[metric])
    champion = next(c for c in result.candidates if c.name == result.champion)
    # The champion is the best on validation, never chosen on test.
    assert champion.validation[metric] == max(c.validation[metric] for c in result.candidates)


def test_every_candidates_test_metrics_are_its_scores_on_the_shared_path(
    result: TrainingResult, log: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Training scores the blend and its LightGBM from one prediction of the test rows:
    # the metrics must be those of scoring each candidate's registered contract.
    customers, events = log
    feats = build_features(customers, events, as_of=result.plan.test, spec=default_spec())
    test = result.test[["customer_id", result.target]].merge(feats, on="customer_id")
    assert len(test) == len(result.test)
    y = test[result.target].to_numpy(dtype=np.float64)
    assert len({id(c.estimator.booster_) for c in result.candidates}) < len(result.candidates)
    for cand in result.candidates:
        scores = score_frame(cand.estimator.booster_, test, cand.contract(result.contract))
        assert cand.test == pytest.approx(metrics_for(result.target, y, scores), rel=1e-9)


def test_blend_offset_anchors_the_scoring_population(
    result: TrainingResult, log: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Churn: mean probability = the Pareto/NBD's mean; value: total = the Pareto/NBD +
    # Gamma-Gamma's expected total (the booster knows no calendar).
    customers, events = log
    pop = scoring_population(customers, events, feature_builder=build_features, spec=default_spec())
    assert pop["frequency_days"].min() >= 1
    booster = result.estimator.booster_
    contract = next(c for c in result.candidates if c.name == "blend").contract(result.contract)
    got = score_frame(booster, pop, contract)
    x = model_matrix(pop, contract)
    raw = booster.predict(x)
    blend = contract.blend
    assert blend is not None
    btyd = btyd_prediction(blend, result.target, 90, contract.feature_names, x)
    # A year with a winter peak: the Pareto/NBD is fitted in seasonally weighted time,
    # anchored at the scoring date, and differs from the calendar-time one.
    assert blend.season is not None
    assert blend.season_as_of == scoring_date(events).date()
    assert max(blend.season) / min(blend.season) > 1.5
    calendar = blend.model_copy(update={"season": None, "season_as_of": None})
    plain = btyd_prediction(calendar, result.target, 90, contract.feature_names, x)
    assert np.abs(plain - btyd).max() > 1e-3
    if result.target == "churn":
        assert got.mean() == pytest.approx(btyd.mean(), rel=1e-6)
        assert contract.calibration is None
    else:
        assert got.sum() == pytest.approx(btyd.sum(), rel=1e-6)
        assert abs(got.sum() / raw.sum() - 1.0) > 1e-3  # not the booster's total
    np.testing.assert_allclose(
        got, blend_scores(result.target, blend.weight, blend.offset, raw, btyd), rtol=1e-12
    )


def test_no_blend_without_the_btyd_columns(result: TrainingResult) -> None:
    contract = result.contract.model_copy(update={"feature_names": ["other"], "blend": None})
    frame = pd.DataFrame({"other": np.zeros(100), result.target: np.zeros(100)})
    out = fit_blend(
        result.target,
        result.estimator.booster_,
        contract,
        validation=frame,
        population=lambda: pytest.fail("the population is not built without BTYD columns"),
    )
    assert out is None
