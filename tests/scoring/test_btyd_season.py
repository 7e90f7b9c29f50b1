"""A BTYD blend in seasonally weighted time: checked, stored and scored from the row."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from scoring.btyd import BTYDBlend, blend_inputs, btyd_prediction, horizon_weeks
from scoring.contract import ModelContract, contract_from_metadata, contract_metadata
from scoring.season import operational_weeks
from training.pareto_nbd import ParetoNBD

NAMES = ["frequency_days", "recency_days", "tenure_days", "monetary_total"]
PARAMS = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
AS_OF = date(2024, 1, 1)
WINTER = tuple(1.6 if m in (1, 2, 11, 12) else 0.7 for m in range(1, 13))


def _x(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(10, 365, n)
    return np.column_stack(
        [
            rng.integers(1, 12, n).astype(float),
            tenure * rng.uniform(0, 1, n),
            tenure,
            rng.gamma(2.0, 50.0, n),
        ]
    )


def test_season_is_checked() -> None:
    with pytest.raises(ValidationError, match="both or neither"):
        BTYDBlend(**PARAMS, weight=0.5, season=WINTER)
    with pytest.raises(ValidationError, match="12 positive"):
        BTYDBlend(**PARAMS, weight=0.5, season=(1.0,) * 11, season_as_of=AS_OF)
    with pytest.raises(ValidationError, match="12 positive"):
        BTYDBlend(**PARAMS, weight=0.5, season=(0.0,) + (1.0,) * 11, season_as_of=AS_OF)


def test_a_flat_season_is_calendar_time() -> None:
    x = _x()
    plain = BTYDBlend(**PARAMS, weight=0.5)
    flat = plain.model_copy(update={"season": (1.0,) * 12, "season_as_of": AS_OF})
    np.testing.assert_allclose(
        btyd_prediction(flat, "churn", 181, NAMES, x),
        btyd_prediction(plain, "churn", 181, NAMES, x),
        rtol=1e-9,
    )
    assert horizon_weeks(flat, 181) == pytest.approx(181 / 7)


def test_seasonal_prediction_is_pareto_nbd_in_operational_time() -> None:
    # Oracle: the Pareto/NBD on (x, t_x, T) converted by hand with the daily index.
    x = _x()
    blend = BTYDBlend(**PARAMS, weight=0.5, season=WINTER, season_as_of=AS_OF)
    origin = pd.Timestamp(AS_OF)
    first = operational_weeks(WINTER, origin, -x[:, 2])
    last = operational_weeks(WINTER, origin, -x[:, 1])
    t_x, big_t = last - first, -first
    h = operational_weeks(WINTER, origin, np.array([181.0]))[0]
    # January and February 2024 (60 days at 1.6), then 121 days of March to June (0.7).
    assert h == pytest.approx((60 * 1.6 + 121 * 0.7) / 7)
    want = ParetoNBD(**PARAMS).prob_no_purchase(h, x[:, 0] - 1, t_x, big_t)
    np.testing.assert_allclose(btyd_prediction(blend, "churn", 181, NAMES, x), want, rtol=1e-9)
    _, got_tx, got_t, _ = blend_inputs(blend, NAMES, x)
    np.testing.assert_allclose(got_t, big_t)
    np.testing.assert_allclose(got_tx, t_x, atol=1e-12)


def test_season_survives_the_contract_metadata() -> None:
    blend = BTYDBlend(**PARAMS, weight=0.4, offset=0.1, season=WINTER, season_as_of=AS_OF)
    contract = ModelContract(target="churn", horizon_days=181, feature_names=NAMES, blend=blend)
    back = contract_from_metadata(contract_metadata(contract))
    assert back.blend == blend
