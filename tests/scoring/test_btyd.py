"""The BTYD blend in the model contract: every scoring path computes it from the row."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from scoring.btyd import BTYDBlend, blend_scores, btyd_prediction
from scoring.contract import (
    ModelContract,
    calibrate,
    contract_from_metadata,
    contract_metadata,
    model_matrix,
    score_frame,
)
from training.pareto_nbd import ParetoNBD

NAMES = ["frequency_days", "recency_days", "tenure_days", "monetary_total", "other"]
PARAMS = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(10, 365, n)
    return pd.DataFrame(
        {
            "frequency_days": rng.integers(1, 12, n).astype(float),
            "recency_days": tenure * rng.uniform(0, 1, n),
            "tenure_days": tenure,
            "monetary_total": rng.gamma(2.0, 50.0, n),
            "other": rng.normal(size=n),
        }
    )


def _booster(frame: pd.DataFrame, objective: str) -> lgb.Booster:
    y = (
        (frame["recency_days"] > 100).astype(float)
        if objective == "binary"
        else frame["other"].abs()
    )
    params = {"objective": objective, "verbose": -1, "num_leaves": 4, "seed": 0}
    return lgb.train(params, lgb.Dataset(frame[NAMES].to_numpy(), y), 5)


def _contract(target: str, **blend: float) -> ModelContract:
    gg = {"gg_p": 6.25, "gg_q": 3.74, "gg_gamma": 15.44} if target == "value" else {}
    return ModelContract(
        target=target,  # type: ignore[arg-type]
        horizon_days=181,
        feature_names=NAMES,
        blend=BTYDBlend(**PARAMS, **gg, weight=blend.get("weight", 0.3), offset=0.2),
    )


def test_blend_churn_score_is_the_logit_average_of_booster_and_pareto_nbd() -> None:
    # Oracle: ParetoNBD.prob_no_purchase on (x, t_x, T) in weeks, by hand from the columns.
    frame = _frame()
    contract = _contract("churn")
    booster = _booster(frame, "binary")
    raw = booster.predict(frame[NAMES].to_numpy())
    pn = ParetoNBD(**PARAMS)
    tenure = frame["tenure_days"].to_numpy() / 7
    pnp = pn.prob_no_purchase(
        181 / 7,
        frame["frequency_days"].to_numpy() - 1,
        tenure - frame["recency_days"].to_numpy() / 7,
        tenure,
    )

    def logit(p: np.ndarray) -> np.ndarray:
        return np.log(p) - np.log1p(-p)

    expected = 1 / (1 + np.exp(-(0.3 * logit(raw) + 0.7 * logit(pnp) + 0.2)))
    np.testing.assert_allclose(score_frame(booster, frame, contract), expected, rtol=1e-9)


def test_blend_weight_one_is_the_booster_and_zero_the_btyd_prediction() -> None:
    frame = _frame()
    x = model_matrix(frame, _contract("value"))
    btyd = btyd_prediction(_contract("value").blend, "value", 181, NAMES, x)  # type: ignore[arg-type]
    raw = np.abs(np.random.default_rng(1).normal(size=len(frame))) + 0.1
    np.testing.assert_allclose(blend_scores("value", 1.0, 0.0, raw, btyd), raw, rtol=1e-12)
    np.testing.assert_allclose(blend_scores("value", 0.0, 0.0, raw, btyd), btyd, rtol=1e-12)


def test_blend_survives_the_metadata_round_trip_and_scores_all_missing_rows() -> None:
    contract = _contract("value", weight=0.6)
    back = contract_from_metadata(contract_metadata(contract))
    assert back == contract
    booster = _booster(_frame(), "tweedie")
    row = np.full((1, len(NAMES)), np.nan)
    score = calibrate(booster.predict(row), back, row)
    assert np.isfinite(score).all()
    assert (score > 0).all()


def test_blend_needs_its_columns_among_the_inputs_and_the_matrix_to_score() -> None:
    with pytest.raises(ValidationError, match="not model inputs"):
        ModelContract(
            target="churn",
            horizon_days=90,
            feature_names=["other"],
            blend=BTYDBlend(**PARAMS, weight=0.5),
        )
    with pytest.raises(ValidationError, match="Gamma-Gamma"):
        ModelContract(
            target="value",
            horizon_days=90,
            feature_names=NAMES,
            blend=BTYDBlend(**PARAMS, weight=0.5),
        )
    with pytest.raises(ValueError, match="matrix rows"):
        calibrate(np.array([0.5]), _contract("churn"))


def test_predictions_in_blocks_equal_one_pass_over_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import scoring.btyd as btyd

    rng = np.random.default_rng(3)
    n = 2 * btyd._CHUNK + 123  # three blocks, the last a short one
    big_t = rng.uniform(5.0, 100.0, n)
    t_x = big_t * rng.uniform(0.0, 1.0, n)
    x = rng.poisson(2.0, n).astype(np.float64)
    params = (0.8, 5.0, 0.6, 12.0)
    blocked = (
        btyd.pareto_prob_alive(params, x, t_x, big_t),
        btyd.pareto_prob_no_purchase(params, 13.0, x, t_x, big_t),
    )
    monkeypatch.setattr(btyd, "_CHUNK", n)
    whole = (
        btyd.pareto_prob_alive(params, x, t_x, big_t),
        btyd.pareto_prob_no_purchase(params, 13.0, x, t_x, big_t),
    )
    for got, expected in zip(blocked, whole, strict=True):
        assert got.shape == (n,)
        np.testing.assert_array_equal(got, expected)
