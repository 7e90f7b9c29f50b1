from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from scoring.contract import IsotonicCalibration, PlattCalibration
from training.config import TrainingConfig
from training.errors import TrainingError
from training.estimators import ChurnClassifier, make_churn_model, make_value_model


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 2] = rng.integers(0, 3, n)  # a categorical code
    logit = 1.5 * x[:, 0] - 1.0 * (x[:, 2] == 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def test_factories_return_unfitted_clonable_estimators() -> None:
    config = TrainingConfig(num_boost_round=7, calibration="platt")
    model = make_churn_model(config, categorical_indices=(2,))
    assert not hasattr(model, "booster_")
    params = clone(model).get_params()
    assert params["num_boost_round"] == 7
    assert params["calibration"] == "platt"
    assert params["categorical_indices"] == (2,)
    assert not hasattr(make_value_model(config), "booster_")


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_churn_classifier_calibrates_on_validation(kind: str) -> None:
    x, y = _data(3000, 0)
    xv, yv = _data(1500, 1)
    model = ChurnClassifier(
        num_boost_round=60,
        calibration=kind,
        categorical_indices=(2,),  # type: ignore[arg-type]
        n_jobs=1,
    ).fit(x, y, X_val=xv, y_val=yv)
    expected = IsotonicCalibration if kind == "isotonic" else PlattCalibration
    assert isinstance(model.calibration_, expected)
    p = model.predict_proba(xv)[:, 1]
    assert p.min() >= 0
    assert p.max() <= 1
    # Calibrated on the validation slice: mean prediction matches its churn rate.
    assert p.mean() == pytest.approx(yv.mean(), abs=0.01)
    xt, yt = _data(1500, 2)
    assert np.corrcoef(model.predict_proba(xt)[:, 1], yt)[0, 1] > 0.3


def test_value_regressor_predicts_expected_spend() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    buys = rng.random(4000) < 1 / (1 + np.exp(-2 * x[:, 0]))
    y = np.where(buys, rng.gamma(2.0, 20 * np.exp(0.5 * x[:, 1])), 0.0)
    model = make_value_model(TrainingConfig(num_boost_round=80), n_jobs=1).fit(x, y)
    pred = model.predict(x)
    assert (pred >= 0).all()
    assert pred.mean() == pytest.approx(y.mean(), rel=0.1)
    assert np.corrcoef(pred, y)[0, 1] > 0.4


def test_degenerate_labels_are_refused() -> None:
    x, _ = _data(100, 0)
    with pytest.raises(TrainingError, match="both churners and non-churners"):
        ChurnClassifier(num_boost_round=5).fit(x, np.ones(100))
    with pytest.raises(TrainingError, match="spend in the horizon"):
        make_value_model(TrainingConfig()).fit(x, np.zeros(100))
