"""Baselines: the linear baseline's preprocessing and fit against scikit-learn's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import training.baselines as baselines
from training.baselines import LinearBaseline

FEATURES = ["heavy", "signed", "gappy", "empty", "constant", "flag"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    heavy = rng.lognormal(3, 2, n)
    signed = rng.normal(0, 50, n)
    gappy = np.where(rng.random(n) < 0.3, np.nan, rng.gamma(2, 10, n))
    logit = 0.8 * np.log1p(heavy) - 0.02 * signed - 2 + np.nan_to_num(gappy) / 20
    return pd.DataFrame(
        {
            "heavy": heavy,
            "signed": signed,
            "gappy": pd.array(gappy, dtype="Float64"),
            "empty": np.full(n, np.nan),
            "constant": np.full(n, 7.0),
            "flag": rng.random(n) < 0.5,
            "churn": rng.random(n) < 1 / (1 + np.exp(-logit)),
            "value": rng.gamma(1, 30, n),
        }
    )


def _sklearn_design(train: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    def signed_log(x: np.ndarray) -> np.ndarray:
        return np.sign(x) * np.log1p(np.abs(x))

    def matrix(f: pd.DataFrame) -> np.ndarray:
        return np.column_stack(
            [f[c].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan) for c in FEATURES]
        )

    pipe = make_pipeline(
        FunctionTransformer(signed_log),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    pipe.fit(matrix(train))
    return np.asarray(pipe.transform(matrix(frame)))


def test_linear_design_matches_the_sklearn_pipeline() -> None:
    train, test = _frame(3000, 0), _frame(500, 1)
    fitted = LinearBaseline("churn", FEATURES).fit(train)
    got = fitted._design(fitted._x(test))
    np.testing.assert_allclose(got, _sklearn_design(train, test), rtol=1e-9, atol=1e-9)


def test_linear_churn_fit_is_the_penalised_optimum() -> None:
    # Newton-Cholesky and a tightly converged L-BFGS solve the same convex problem.
    train, test = _frame(3000, 0), _frame(500, 1)
    fitted = LinearBaseline("churn", FEATURES).fit(train)
    reference = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-10, max_iter=10_000)
    reference.fit(_sklearn_design(train, train), train["churn"].astype(int))
    np.testing.assert_allclose(fitted.model_.coef_, reference.coef_, atol=1e-5)
    np.testing.assert_allclose(
        fitted.predict(test),
        reference.predict_proba(_sklearn_design(train, test))[:, 1],
        atol=1e-6,
    )


def test_linear_value_predictions_are_non_negative() -> None:
    train, test = _frame(2000, 2), _frame(300, 3)
    pred = LinearBaseline("value", FEATURES).fit(train).predict(test)
    assert pred.shape == (300,)
    assert (pred >= 0).all()


def test_linear_subsample_draws_the_rows_dataframe_sample_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(baselines, "_MAX_LINEAR_ROWS", 400)
    train = _frame(1500, 4)
    train.index = np.zeros(len(train), dtype=int)  # a view's index need not be unique
    fitted = LinearBaseline("value", FEATURES, seed=3).fit(train)
    expected = LinearBaseline("value", FEATURES).fit(
        _frame(1500, 4).sample(400, random_state=3).sort_index()
    )
    np.testing.assert_allclose(fitted.model_.coef_, expected.model_.coef_, rtol=1e-9)
