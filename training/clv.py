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

from scoring.btyd import gamma_gamma_spend
from training.errors import TrainingError
from training.threads import one_blas_thread

__all__ = ["BGNBD", "GammaGamma", "simulate_bgnbd", "simulate_gamma_gamma"]


class _BGNBDData:
    """BG/NBD inputs arranged for a fast likelihood: the terms that depend on ``x``
    alone are computed once per distinct ``x`` and weighted by its count."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> None:
        self.n = len(x)
        self.x_values, self.x_counts = np.unique(x, return_counts=True)
        self.big_t = big_t
        self.x = x
        repeat = x > 0
        self.repeat = repeat
        self.x_rep = x[repeat]
        self.t_x_rep = t_x[repeat]


def _bgnbd_nll_grad(params: np.ndarray, d: _BGNBDData) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of BG/NBD (Fader, Hardie & Lee 2005, eq. 6) and its
    gradient in ``(r, alpha, a, b)``.

    Per customer, ``LL = A1 + A2 + log(exp(A3) + [x > 0] exp(A4))`` with
    ``A1 = lnG(r + x) - lnG(r) + r ln(alpha)``,
    ``A2 = lnG(a + b) + lnG(b + x) - lnG(b) - lnG(a + b + x)``,
    ``A3 = -(r + x) ln(alpha + T)`` and
    ``A4 = ln(a) - ln(b + x - 1) - (r + x) ln(alpha + t_x)``.
    """
    r, alpha, a, b = params
    xu, cu = d.x_values, d.x_counts
    n = d.n
    # Terms in x alone, summed over the distinct values of x.
    ll = float(
        cu @ (special.gammaln(r + xu) + special.gammaln(b + xu) - special.gammaln(a + b + xu))
    ) + n * (-special.gammaln(r) + r * np.log(alpha) + special.gammaln(a + b) - special.gammaln(b))
    psi_rx = special.digamma(r + xu)
    psi_bx = special.digamma(b + xu)
    psi_abx = special.digamma(a + b + xu)
    psi_ab = special.digamma(a + b)
    g_r = float(cu @ psi_rx) - n * special.digamma(r) + n * np.log(alpha)
    g_alpha = n * r / alpha
    g_a = n * psi_ab - float(cu @ psi_abx)
    g_b = n * (psi_ab - special.digamma(b)) + float(cu @ (psi_bx - psi_abx))

    # log(exp(A3) + exp(A4)) = A3 + log1p(exp(A4 - A3)): only repeat buyers have A4.
    log_at = np.log(alpha + d.big_t)
    rx = r + d.x
    a3 = -rx * log_at
    ll += float(a3.sum())
    g_r -= float(log_at.sum())
    inv_at = 1.0 / (alpha + d.big_t)
    g_alpha -= float(rx @ inv_at)

    x_rep = d.x_rep
    rx_rep = r + x_rep
    log_at_rep = log_at[d.repeat]
    log_atx = np.log(alpha + d.t_x_rep)
    diff = np.log(a) - np.log(b + x_rep - 1) - rx_rep * (log_atx - log_at_rep)  # A4 - A3
    ll += float(np.logaddexp(0.0, diff).sum())
    w4 = special.expit(diff)  # share of the A4 branch
    # d/dθ of log1p(exp(diff)) = w4 * d(diff)/dθ.
    g_r -= float(w4 @ (log_atx - log_at_rep))
    g_alpha -= float(w4 @ (rx_rep * (1.0 / (alpha + d.t_x_rep) - inv_at[d.repeat])))
    g_a += float(w4.sum()) / a
    g_b -= float(w4 @ (1.0 / (b + x_rep - 1)))
    grad = np.array([g_r, g_alpha, g_a, g_b])
    return -ll / n, -grad / n


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
        data = _BGNBDData(x, t_x, big_t)

        def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            params[1] *= scale  # alpha in the data's time unit
            value, grad = _bgnbd_nll_grad(params, data)
            # Chain rule through params = exp(log_params) (times scale for alpha).
            return value, grad * params

        start = np.log(np.array([1.0, 1.0, 1.0, 1.0]))
        with one_blas_thread():
            res = optimize.minimize(
                nll, start, jac=True, method="L-BFGS-B", bounds=[(-9.0, 9.0)] * 4
            )
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
        with one_blas_thread():
            for xv in np.unique(x):
                p, weights = _beta_nodes(self.a, self.b + xv)
                rows = x == xv
                base = (self.alpha + big_t[rows])[:, None]
                log_ratio = (self.r + xv) * (np.log(base) - np.log(base + p[None, :] * t))
                out[rows] = (-np.expm1(log_ratio) / p[None, :]) @ weights
        return self.prob_alive(x, t_x, big_t) * out


def _beta_nodes(a: float, b: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights integrating smooth functions of ``p ~ Beta(a, b)``.

    Gauss-Jacobi when its weights are finite; for large ``a`` or ``b`` (a fit at the
    edge of its bounds) their normalising constant overflows to NaN, and the midpoint
    rule on the quantiles, ``p_k = F^-1((k + 1/2) / 64)``, takes over.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        nodes, weights = special.roots_jacobi(n, b - 1, a - 1)
        total = weights.sum()
    if np.isfinite(total) and total > 0 and np.all(np.isfinite(nodes)):
        return (1.0 + nodes) / 2.0, weights / total
    k = 64
    p = special.betaincinv(a, b, (np.arange(k) + 0.5) / k)
    return np.clip(p, 1e-300, 1.0), np.full(k, 1.0 / k)


def _gg_nll_grad(
    params: np.ndarray, x: np.ndarray, m: np.ndarray, const: float
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of Gamma-Gamma and its gradient in ``(p, q, gamma)``.

    Per customer, ``LL = lnG(px + q) - lnG(px) - lnG(q) + q ln(gamma) + (px - 1) ln(m)
    + px ln(x) - (px + q) ln(gamma + mx)``; ``const`` is the mean of ``-ln(m)``, the
    only term free of the parameters.
    """
    p, q, gamma = params
    px = p * x
    log_mx = np.log(m * x)  # ln(m) + ln(x)
    log_gmx = np.log(gamma + m * x)
    psi_pxq = special.digamma(px + q)
    n = len(x)
    ll = float(
        np.sum(special.gammaln(px + q) - special.gammaln(px) + px * (log_mx - log_gmx))
        - q * log_gmx.sum()
    ) + n * (q * np.log(gamma) - special.gammaln(q) - const)
    g_p = float(x @ (psi_pxq - special.digamma(px) + log_mx - log_gmx))
    g_q = float(psi_pxq.sum() - log_gmx.sum()) + n * (np.log(gamma) - special.digamma(q))
    g_gamma = n * q / gamma - float(np.sum((px + q) / (gamma + m * x)))
    return -ll / n, -np.array([g_p, g_q, g_gamma]) / n


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
        const = float(np.mean(np.log(m)))

        def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            params[2] *= scale
            value, grad = _gg_nll_grad(params, x, m, const)
            return value, grad * params

        with one_blas_thread():
            res = optimize.minimize(
                nll, np.zeros(3), jac=True, method="L-BFGS-B", bounds=[(-9.0, 9.0)] * 3
            )
        if not np.isfinite(res.fun):
            raise TrainingError(f"Gamma-Gamma fit did not converge: {res.message}")
        p, q, gamma = np.exp(res.x)
        self.p, self.q, self.gamma = float(p), float(q), float(gamma * scale)
        return self

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[spend per transaction | x, m]; the population mean where ``x == 0``."""
        return gamma_gamma_spend((self.p, self.q, self.gamma), x, m)


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
