"""BG/NBD and Gamma-Gamma: parameter recovery on data simulated from the models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, special

from training.clv import (
    BGNBD,
    GammaGamma,
    _bgnbd_nll_grad,
    _BGNBDData,
    _gg_nll_grad,
    simulate_bgnbd,
    simulate_gamma_gamma,
)
from training.errors import TrainingError


@pytest.mark.parametrize(("r", "alpha", "a", "b"), [(0.8, 4.0, 0.6, 2.5), (2.0, 10.0, 1.5, 4.0)])
def test_bgnbd_recovers_parameters(r: float, alpha: float, a: float, b: float) -> None:
    big_t = np.random.default_rng(3).uniform(20, 60, 6000)
    x, t_x, big_t = simulate_bgnbd(6000, r=r, alpha=alpha, a=a, b=b, big_t=big_t, seed=1)
    fit = BGNBD().fit(x, t_x, big_t)
    # Mean rate r/alpha and dropout a/(a+b) are what the data pin down best.
    assert fit.r / fit.alpha == pytest.approx(r / alpha, rel=0.1)
    assert fit.a / (fit.a + fit.b) == pytest.approx(a / (a + b), rel=0.15)
    assert fit.r == pytest.approx(r, rel=0.3)
    assert fit.b == pytest.approx(b, rel=0.5)


def _closed_form_expected(
    m: BGNBD, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Fader, Hardie & Lee (2005) eq. 10, valid for a > 1."""
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
    ratio = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
    odds = np.where(x > 0, a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x), 0)
    return (a + b + x - 1) / (a - 1) * (1 - ratio * hyp) / (1 + odds)


def test_expected_purchases_match_the_closed_form() -> None:
    x, t_x, big_t = simulate_bgnbd(2000, r=0.8, alpha=4.0, a=1.6, b=2.5, big_t=40, seed=2)
    m = BGNBD(r=0.8, alpha=4.0, a=1.6, b=2.5)
    np.testing.assert_allclose(
        m.expected_purchases(10, x, t_x, big_t),
        _closed_form_expected(m, 10, x, t_x, big_t),
        rtol=1e-9,
    )


def test_no_purchase_probability_matches_simulation() -> None:
    # Customers simulated over 40 weeks then 12 more: the share with no purchase in the
    # extra 12 weeks must match the model's mean prediction from the first 40.
    params = {"r": 1.0, "alpha": 5.0, "a": 0.7, "b": 2.0}
    rng = np.random.default_rng(7)
    n = 4000
    lam = rng.gamma(params["r"], 1 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    x, t_x = np.zeros(n), np.zeros(n)
    none_after = np.ones(n, dtype=bool)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > 52:
                break
            if t > 40:
                none_after[i] = False
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    model = BGNBD(**params)
    predicted = model.prob_no_purchase(12, x, t_x, np.full(n, 40.0))
    assert predicted.mean() == pytest.approx(none_after.mean(), abs=0.02)


def test_gamma_gamma_recovers_mean_spend() -> None:
    x = np.random.default_rng(4).poisson(3, 5000) + 1
    m = simulate_gamma_gamma(x, p=6.0, q=4.0, gamma=15.0, seed=5)
    fit = GammaGamma().fit(x, m)
    assert fit.p * fit.gamma / (fit.q - 1) == pytest.approx(6 * 15 / 3, rel=0.05)
    assert fit.q == pytest.approx(4.0, rel=0.25)
    # Conditional expectations shrink the observed mean towards the population mean.
    cond = fit.expected_spend(np.array([1, 50]), np.array([100.0, 100.0]))
    assert 30 < cond[0] < cond[1] < 100


def test_fits_refuse_bad_input() -> None:
    with pytest.raises(TrainingError, match="t_x <= T"):
        BGNBD().fit(np.array([1.0]), np.array([5.0]), np.array([3.0]))
    with pytest.raises(TrainingError, match="at least 10"):
        GammaGamma().fit(np.array([1, 2]), np.array([3.0, 4.0]))


def _bgnbd_loglik_per_row(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Fader, Hardie & Lee (2005) eq. 6, one customer at a time (the oracle)."""
    r, alpha, a, b = params
    out = np.empty(len(x))
    for i in range(len(x)):
        a1 = special.gammaln(r + x[i]) - special.gammaln(r) + r * np.log(alpha)
        a2 = (
            special.gammaln(a + b)
            + special.gammaln(b + x[i])
            - special.gammaln(b)
            - special.gammaln(a + b + x[i])
        )
        a3 = -(r + x[i]) * np.log(alpha + big_t[i])
        like = np.exp(a3)
        if x[i] > 0:
            like += np.exp(np.log(a) - np.log(b + x[i] - 1) - (r + x[i]) * np.log(alpha + t_x[i]))
        out[i] = a1 + a2 + np.log(like)
    return out


@pytest.mark.parametrize(
    "params", [(0.8, 4.0, 0.6, 2.5), (2.0, 10.0, 1.5, 4.0), (0.1, 0.5, 3.0, 0.2)]
)
def test_bgnbd_likelihood_and_gradient_match_the_per_row_formula(
    params: tuple[float, float, float, float],
) -> None:
    big_t = np.random.default_rng(3).uniform(20, 60, 500)
    x, t_x, big_t = simulate_bgnbd(500, r=0.8, alpha=4.0, a=0.6, b=2.5, big_t=big_t, seed=1)
    data = _BGNBDData(x, t_x, big_t)
    p = np.array(params)
    value, grad = _bgnbd_nll_grad(p, data)
    assert value == pytest.approx(-_bgnbd_loglik_per_row(p, x, t_x, big_t).mean(), rel=1e-12)
    numeric = optimize.approx_fprime(p, lambda q: _bgnbd_nll_grad(q, data)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("params", [(6.0, 4.0, 15.0), (1.0, 2.0, 3.0)])
def test_gamma_gamma_likelihood_and_gradient_match_the_per_row_formula(
    params: tuple[float, float, float],
) -> None:
    x = (np.random.default_rng(4).poisson(3, 400) + 1).astype(float)
    m = simulate_gamma_gamma(x, p=6.0, q=4.0, gamma=15.0, seed=5)
    p, q, gamma = params
    per_row = (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(gamma + m * x)
    )
    const = float(np.mean(np.log(m)))
    value, grad = _gg_nll_grad(np.array(params), x, m, const)
    assert value == pytest.approx(-per_row.mean(), rel=1e-12)
    numeric = optimize.approx_fprime(
        np.array(params), lambda v: _gg_nll_grad(v, x, m, const)[0], 1e-7
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_expected_purchases_stay_finite_at_extreme_dropout_parameters() -> None:
    # Fits at the edge of the bounds made the Gauss-Jacobi weights overflow to NaN.
    x, t_x, big_t = np.array([0.0, 1, 5]), np.array([0.0, 2, 10]), np.array([5.0, 10, 20])
    for a, b in [(0.3, 8000.0), (8000.0, 2e-4), (0.3, 60.0)]:
        m = BGNBD(r=1.0, alpha=3.0, a=a, b=b)
        out = m.expected_purchases(26.0, x, t_x, big_t)
        assert np.isfinite(out).all()
        assert (out >= 0).all()
    # Where both rules apply they agree: the fallback is the same integral.
    m = BGNBD(r=1.0, alpha=3.0, a=0.3, b=60.0)
    near = BGNBD(r=1.0, alpha=3.0, a=0.3, b=60.0 * (1 + 1e-9))
    np.testing.assert_allclose(
        m.expected_purchases(26.0, x, t_x, big_t),
        near.expected_purchases(26.0, x, t_x, big_t),
        rtol=1e-6,
    )
