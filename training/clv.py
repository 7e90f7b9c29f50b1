"""BG/NBD and Gamma-Gamma customer-base models, fitted by maximum likelihood.

The classic probabilistic baselines for non-contractual customers (Fader, Hardie & Lee
2005, "Counting Your Customers the Easy Way"; and "RFM and CLV", 2005):

- **BG/NBD**: while alive, a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``;
  after each purchase they drop out with probability ``p ~ Beta(a, b)``. Its inputs per
  customer are ``x`` (repeat purchases), ``t_x`` (time of the last purchase since the
  first) and ``T`` (time since the first purchase).
- **Gamma-Gamma**: a customer's spend per transaction is ``Gamma(p, nu)`` with
  ``nu ~ Gamma(q, gamma)``, independent of the purchase process; fitted on customers
  with at least one repeat purchase.

Time is in whatever unit the caller uses (Tagsmith uses weeks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from training.errors import TrainingError

__all__ = ["BGNBD", "GammaGamma", "simulate_bgnbd", "simulate_gamma_gamma"]


def _bgnbd_loglik(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    r, alpha, a, b = params
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


@dataclass
class BGNBD:
    """The BG/NBD model. Call :meth:`fit`, then the conditional predictions.

    Attributes:
        r, alpha, a, b: Fitted parameters (NaN until fitted).
    """

    r: float = float("nan")
    alpha: float = float("nan")
    a: float = float("nan")
    b: float = float("nan")

    def fit(
        self,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        *,
        max_rows: int = 200_000,
        seed: int = 0,
    ) -> BGNBD:
        """Maximum-likelihood fit (L-BFGS-B on log-parameters).

        Rows beyond ``max_rows`` are subsampled at random: four parameters are
        determined long before that, and it keeps the fit to a second.

        Raises:
            TrainingError: Inputs are inconsistent or the optimiser fails.
        """
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        if len(x) == 0:
            raise TrainingError("Expected customers to fit BG/NBD on. Got none.")
        if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > big_t + 1e-9):
            raise TrainingError(
                "Expected BG/NBD inputs with x >= 0 and 0 <= t_x <= T. Got rows breaking that."
            )
        if len(x) > max_rows:
            idx = np.random.default_rng(seed).choice(len(x), max_rows, replace=False)
            x, t_x, big_t = x[idx], t_x[idx], big_t[idx]
        scale = max(float(np.mean(big_t)), 1e-9)

        def nll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            params[1] *= scale  # alpha in the data's time unit
            return -float(np.sum(_bgnbd_loglik(params, x, t_x, big_t))) / len(x)

        start = np.log(np.array([1.0, 1.0, 1.0, 1.0]))
        res = optimize.minimize(nll, start, method="L-BFGS-B", bounds=[(-9.0, 9.0)] * 4)
        if not np.isfinite(res.fun):
            raise TrainingError(f"BG/NBD fit did not converge: {res.message}")
        r, alpha, a, b = np.exp(res.x)
        self.r, self.alpha, self.a, self.b = float(r), float(alpha * scale), float(a), float(b)
        return self

    def _odds_dead(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        # P(dead) / P(alive) given the history; zero for customers without repeats.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x - 1, 1e-300))
                + (self.r + x) * (np.log(self.alpha + big_t) - np.log(self.alpha + t_x))
            )
            return np.where(x > 0, np.exp(np.minimum(log_odds, 700)), 0.0)

    def prob_alive(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T)."""
        return 1.0 / (1.0 + self._odds_dead(*(np.asarray(v, float) for v in (x, t_x, big_t))))

    def prob_no_purchase(
        self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T).

        Dead customers never buy; a live one cannot drop out before buying again, so
        given alive, no purchase has probability ``E[exp(-lambda t)]`` under the
        posterior ``lambda ~ Gamma(r + x, alpha + T)``.
        """
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        alive = self.prob_alive(x, t_x, big_t)
        no_buy_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + big_t) - np.log(self.alpha + big_t + t))
        )
        return (1.0 - alive) + alive * no_buy_if_alive

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        """E[number of purchases in (T, T + t] | x, t_x, T].

        Given alive with rate ``lambda`` and dropout ``p``, the expected count is
        ``(1 - exp(-lambda p t)) / p``; integrating ``lambda`` over its posterior
        ``Gamma(r + x, alpha + T)`` leaves a one-dimensional integral over the posterior
        ``p ~ Beta(a, b + x)``, done by Gauss-Jacobi quadrature. Unlike the
        hypergeometric closed form (Fader et al. eq. 10), this also holds for ``a <= 1``.
        """
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        out = np.empty(len(x), dtype=np.float64)
        for xv in np.unique(x):
            nodes, weights = special.roots_jacobi(40, self.b + xv - 1, self.a - 1)
            p = (1.0 + nodes) / 2.0
            weights = weights / weights.sum()
            rows = x == xv
            base = (self.alpha + big_t[rows])[:, None]
            log_ratio = (self.r + xv) * (np.log(base) - np.log(base + p[None, :] * t))
            out[rows] = (-np.expm1(log_ratio) / p[None, :]) @ weights
        return self.prob_alive(x, t_x, big_t) * out


def _gg_loglik(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    p, q, gamma = params
    return (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(gamma + m * x)
    )


@dataclass
class GammaGamma:
    """The Gamma-Gamma spend model.

    Attributes:
        p, q, gamma: Fitted parameters (NaN until fitted).
    """

    p: float = float("nan")
    q: float = float("nan")
    gamma: float = float("nan")

    def fit(
        self, x: np.ndarray, m: np.ndarray, *, max_rows: int = 200_000, seed: int = 0
    ) -> GammaGamma:
        """Maximum-likelihood fit on customers with ``x >= 1`` transactions of mean ``m > 0``.

        Raises:
            TrainingError: Fewer than 10 usable customers, or the optimiser fails.
        """
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        keep = (x >= 1) & (m > 0) & np.isfinite(m)
        x, m = x[keep], m[keep]
        if len(x) < 10:
            raise TrainingError(
                f"Expected at least 10 customers with spend to fit Gamma-Gamma. Got {len(x)}."
            )
        if len(x) > max_rows:
            idx = np.random.default_rng(seed).choice(len(x), max_rows, replace=False)
            x, m = x[idx], m[idx]
        scale = float(np.mean(m))

        def nll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            params[2] *= scale
            return -float(np.sum(_gg_loglik(params, x, m))) / len(x)

        res = optimize.minimize(nll, np.zeros(3), method="L-BFGS-B", bounds=[(-9.0, 9.0)] * 3)
        if not np.isfinite(res.fun):
            raise TrainingError(f"Gamma-Gamma fit did not converge: {res.message}")
        p, q, gamma = np.exp(res.x)
        self.p, self.q, self.gamma = float(p), float(q), float(gamma * scale)
        return self

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[spend per transaction | x, m]; the population mean where ``x == 0``."""
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        population_mean = self.p * self.gamma / (self.q - 1) if self.q > 1 else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = (self.gamma + m * x) * self.p / (self.p * x + self.q - 1)
        return np.where((x > 0) & np.isfinite(cond), cond, population_mean)


def simulate_bgnbd(
    n: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    big_t: np.ndarray | float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(x, t_x, T)`` for ``n`` customers from the BG/NBD model itself.

    Each customer's first purchase is at time 0 and they are observed until ``T``.
    """
    rng = np.random.default_rng(seed)
    big_t = np.broadcast_to(np.asarray(big_t, dtype=np.float64), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        # Alive at the first purchase; after each repeat purchase, drop out with p.
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > big_t[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, big_t


def simulate_gamma_gamma(
    x: np.ndarray, *, p: float, q: float, gamma: float, seed: int = 0
) -> np.ndarray:
    """Mean spend per transaction for customers with ``x`` transactions, from the model."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.int64)
    nu = rng.gamma(q, 1.0 / gamma, len(x))
    # The sum of x Gamma(p, nu) draws is Gamma(p * x, nu).
    totals = rng.gamma(np.maximum(p * x, 1e-12), 1.0 / nu)
    return np.where(x > 0, totals / np.maximum(x, 1), 0.0)
