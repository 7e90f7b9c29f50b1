"""Pareto/NBD: the published CDNOW estimates (the oracle) and predictions against
simulation from the model itself.

``tests/data/cdnow_customers_summary.csv`` is the CDNOW sample summary (2,357 customers
of the first-quarter 1997 cohort, 39 weeks of calibration; columns x = frequency,
t_x = recency and T in weeks) as shipped with the MIT-licensed ``lifetimes`` package
(``lifetimes/datasets/cdnow_customers_summary.csv``); the data are Fader & Hardie's
public CDNOW sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingError
from training.pareto_nbd import ParetoNBD

CDNOW = Path(__file__).parents[1] / "data" / "cdnow_customers_summary.csv"


def _simulate(
    n: int, r: float, alpha: float, s: float, beta: float, big_t: float, horizon: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) over [0, T] and the purchase count in (T, T + horizon]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    death = rng.exponential(1 / rng.gamma(s, 1 / beta, n))
    x = np.zeros(n)
    t_x = np.zeros(n)
    later = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > min(death[i], big_t + horizon):
                break
            if t <= big_t:
                x[i] += 1
                t_x[i] = t
            else:
                later[i] += 1
    return x, t_x, np.full(n, big_t), later


def test_cdnow_estimates_match_fader_hardie_lee_2005() -> None:
    data = pd.read_csv(CDNOW)
    m = ParetoNBD().fit(data["frequency"], data["recency"], data["T"])
    # Published: r = 0.55, alpha = 10.58, s = 0.61, beta = 11.67; LL = -9595.0.
    assert m.r == pytest.approx(0.553, abs=0.005)
    assert m.alpha == pytest.approx(10.58, abs=0.1)
    assert m.s == pytest.approx(0.606, abs=0.01)
    assert m.beta == pytest.approx(11.67, abs=0.3)
    assert m.log_likelihood == pytest.approx(-9595.0, abs=0.5)


def test_a_warm_start_reaches_the_published_maximum() -> None:
    # The blend starts its scoring-date fit from the validation fit: same maximum.
    data = pd.read_csv(CDNOW)
    cold = ParetoNBD().fit(data["frequency"], data["recency"], data["T"])
    for start in ((0.55, 10.58, 0.61, 11.67), (2.0, 3.0, 0.2, 40.0)):
        warm = ParetoNBD().fit(data["frequency"], data["recency"], data["T"], start=start)
        assert warm.log_likelihood == pytest.approx(cold.log_likelihood, abs=0.01)
        assert warm.r == pytest.approx(0.553, abs=0.005)
        assert warm.s == pytest.approx(0.606, abs=0.01)
        assert warm.beta == pytest.approx(11.67, abs=0.3)


def test_predictions_match_simulation_from_the_model() -> None:
    params = {"r": 0.8, "alpha": 6.0, "s": 0.7, "beta": 12.0}
    x, t_x, big_t, later = _simulate(20_000, **params, big_t=39.0, horizon=26.0, seed=2)
    m = ParetoNBD(**params)
    expected = m.expected_purchases(26.0, x, t_x, big_t)
    no_buy = m.prob_no_purchase(26.0, x, t_x, big_t)
    assert expected.sum() == pytest.approx(later.sum(), rel=0.05)
    assert no_buy.mean() == pytest.approx((later == 0).mean(), abs=0.01)
    # Conditional on the history too: buyers of many vs few repeat purchases.
    for group in (x == 0, (x >= 1) & (x < 4), x >= 4):
        assert expected[group].sum() == pytest.approx(later[group].sum(), rel=0.1)
        assert no_buy[group].mean() == pytest.approx((later[group] == 0).mean(), abs=0.02)
    alive = m.prob_alive(x, t_x, big_t)
    assert ((alive > 0) & (alive <= 1)).all()
    assert alive[x == 0].mean() < alive[x >= 4].mean()


def test_fit_recovers_simulated_parameters() -> None:
    x, t_x, big_t, _ = _simulate(8_000, 0.8, 6.0, 0.7, 12.0, big_t=52.0, horizon=0.0, seed=5)
    m = ParetoNBD().fit(x, t_x, big_t)
    assert m.r / m.alpha == pytest.approx(0.8 / 6.0, rel=0.1)
    assert m.s / m.beta == pytest.approx(0.7 / 12.0, rel=0.35)


def test_fit_refuses_bad_input() -> None:
    with pytest.raises(TrainingError, match="none"):
        ParetoNBD().fit(np.array([]), np.array([]), np.array([]))
    with pytest.raises(TrainingError, match="t_x <= T"):
        ParetoNBD().fit(np.array([1.0]), np.array([5.0]), np.array([2.0]))


def test_the_fits_run_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Multithreaded dot products of the 30k-row likelihood cost 7x the CPU on a busy
    # machine (training.threads): every likelihood step must see one BLAS thread.
    from threadpoolctl import threadpool_info

    import training.clv as clv
    import training.pareto_nbd as pareto_nbd

    seen: list[int] = []

    def spy(wrapped):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
            return wrapped(*args, **kwargs)

        return call

    monkeypatch.setattr(pareto_nbd, "_nll_grad", spy(pareto_nbd._nll_grad))
    monkeypatch.setattr(clv, "_bgnbd_nll_grad", spy(clv._bgnbd_nll_grad))
    monkeypatch.setattr(clv, "_gg_nll_grad", spy(clv._gg_nll_grad))
    data = pd.read_csv(CDNOW)
    x, t_x, big_t = (data[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    ParetoNBD().fit(x, t_x, big_t)
    clv.BGNBD().fit(x, t_x, big_t)
    clv.GammaGamma().fit(x + 1, np.full(len(x), 20.0) + x)
    assert seen
    assert set(seen) == {1}
