"""The Pareto/NBD customer-base model (Schmittlein, Morrison & Colombo 1987), fitted by
maximum likelihood.

While alive, a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``; their
lifetime is exponential with rate ``mu ~ Gamma(s, beta)``, independent of ``lambda``.
Unlike BG/NBD, a customer can drop out at any time, not only at a purchase. Inputs per
customer are ``x`` (repeat purchases), ``t_x`` (time of the last purchase since the
first) and ``T`` (time since the first purchase).

The likelihood is usually written with a Gauss hypergeometric function (Fader, Hardie
& Lee 2005, "A Note on Deriving the Pareto/NBD Model and Related Expressions"), which
is slow and fragile when ``alpha`` and ``beta`` differ a lot. Here it is the integral it
comes from: given ``(lambda, mu)``,

    L = lambda^x exp(-(lambda + mu) T) + lambda^x integral_{t_x}^{T} mu exp(-(lambda + mu) t) dt

(alive at ``T``, or died at some ``t`` between the last purchase and ``T``); taking
expectations over the Gamma mixing distributions gives

    L = G(r + x) alpha^r beta^s / G(r) * [ (alpha + T)^-(r + x) (beta + T)^-s
        + s integral_{t_x}^{T} (alpha + t)^-(r + x) (beta + t)^-(s + 1) dt ],

a smooth one-dimensional integral done by Gauss-Legendre quadrature, vectorised over
customers. The same construction gives P(alive), the expected number of purchases and
the probability of no purchase over any horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from scoring.btyd import LOG_WEIGHTS as _LOG_WEIGHTS
from scoring.btyd import NODES as _NODES
from scoring.btyd import log_integral as _log_integral
from scoring.btyd import (
    pareto_expected_purchases,
    pareto_prob_alive,
    pareto_prob_no_purchase,
)
from training.errors import TrainingError
from training.threads import one_blas_thread

__all__ = ["ParetoNBD"]


def _log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    r, alpha, s, beta = params
    rx = r + x
    head = special.gammaln(rx) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -rx * np.log(alpha + big_t) - s * np.log(beta + big_t)
    died = np.log(s) + _log_integral(t_x, big_t, alpha, rx, beta, s + 1.0)
    return np.asarray(head + np.logaddexp(alive, died))


class _Nodes:
    """The quadrature nodes over ``[t_x, T]`` per row (rows x nodes), which do not depend
    on the parameters, and scratch arrays of that shape: a fit computes the nodes once
    and reuses the buffers at every step, where fresh rows x nodes temporaries (page
    faults on each new array) cost more than the arithmetic."""

    def __init__(self, t_x: np.ndarray, big_t: np.ndarray) -> None:
        half = (big_t - t_x) / 2.0
        self.t = np.asarray(t_x[:, None] + half[:, None] * (_NODES[None, :] + 1.0))
        self.a, self.b, self.f, self.tmp = (np.empty_like(self.t) for _ in range(4))


def _nll_grad(
    params: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    big_t: np.ndarray,
    nodes: _Nodes | None = None,
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood and its gradient in ``(r, alpha, s, beta)``.

    With ``LL = head + log(exp(A) + exp(D))``, ``D = log s + log I`` and ``I`` the
    integral of ``f(t) = (alpha + t)^-(r + x) (beta + t)^-(s + 1)``: the derivative of
    ``log I`` is the ``f``-weighted mean over the quadrature nodes of the derivative of
    ``log f``, so one pass over the nodes gives the value and all four derivatives.
    ``nodes`` is :class:`_Nodes` of the rows (built here when not given).
    """
    r, alpha, s, beta = params
    n = len(x)
    nodes = nodes if nodes is not None else _Nodes(t_x, big_t)
    rx = r + x
    head = special.gammaln(rx) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    log_at, log_bt = np.log(alpha + big_t), np.log(beta + big_t)
    a_term = -rx * log_at - s * log_bt
    half = (big_t - t_x) / 2.0
    log_a = np.log(np.add(alpha, nodes.t, out=nodes.a), out=nodes.a)
    log_b = np.log(np.add(beta, nodes.t, out=nodes.b), out=nodes.b)
    # log f = -(r + x) log(alpha + t) - (s + 1) log(beta + t) + log weights.
    log_f = np.multiply(log_a, -rx[:, None], out=nodes.f)
    log_f -= np.multiply(log_b, s + 1.0, out=nodes.tmp)
    log_f += _LOG_WEIGHTS[None, :]
    top = log_f.max(axis=1)
    log_f -= top[:, None]
    w = np.exp(log_f, out=log_f)
    total = w.sum(axis=1)
    w /= total[:, None]
    empty = half <= 0
    with np.errstate(divide="ignore"):
        d_term = np.where(empty, -np.inf, np.log(s) + np.log(total) + top + np.log(half))
    both = np.logaddexp(a_term, d_term)
    ll = float(np.sum(head + both))
    share_d = np.where(empty, 0.0, np.exp(d_term - both))
    share_a = 1.0 - share_d
    # E_f[d log f / d theta] per row (einsum: row sums without a rows x nodes product).
    e_r = -np.einsum("ij,ij->i", w, log_a)
    e_s = -np.einsum("ij,ij->i", w, log_b)
    inv_a = np.reciprocal(np.add(alpha, nodes.t, out=nodes.a), out=nodes.a)
    inv_b = np.reciprocal(np.add(beta, nodes.t, out=nodes.b), out=nodes.b)
    e_alpha = -rx * np.einsum("ij,ij->i", w, inv_a)
    e_beta = -(s + 1.0) * np.einsum("ij,ij->i", w, inv_b)
    g_r = special.digamma(rx).sum() - n * special.digamma(r) + n * np.log(alpha)
    g_r += float(share_a @ -log_at + share_d @ e_r)
    g_alpha = n * r / alpha + float(share_a @ (-rx / (alpha + big_t)) + share_d @ e_alpha)
    g_s = n * np.log(beta) + float(share_a @ -log_bt + share_d @ (1.0 / s + e_s))
    g_beta = n * s / beta + float(share_a @ (-s / (beta + big_t)) + share_d @ e_beta)
    return -ll / n, -np.array([g_r, g_alpha, g_s, g_beta]) / n


@dataclass
class ParetoNBD:
    """The Pareto/NBD model. Call :meth:`fit`, then the conditional predictions.

    Attributes:
        r, alpha, s, beta: Fitted parameters (NaN until fitted).
        log_likelihood: Total log-likelihood at the fit (on the rows fitted).
    """

    r: float = float("nan")
    alpha: float = float("nan")
    s: float = float("nan")
    beta: float = float("nan")
    log_likelihood: float = float("nan")

    def fit(
        self,
        x: np.ndarray,
        t_x: np.ndarray,
        big_t: np.ndarray,
        *,
        max_rows: int = 30_000,
        seed: int = 0,
        start: tuple[float, float, float, float] | None = None,
    ) -> ParetoNBD:
        """Maximum-likelihood fit (L-BFGS-B on log-parameters).

        Rows beyond ``max_rows`` are subsampled at random (four parameters are pinned
        down long before that). ``start`` is ``(r, alpha, s, beta)`` to start from, e.g.
        a fit of the same customers at an earlier date (fewer steps than the default
        start, the same maximum).

        Raises:
            TrainingError: Inputs are inconsistent or the optimiser fails.
        """
        x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (x, t_x, big_t))
        if len(x) == 0:
            raise TrainingError("Expected customers to fit Pareto/NBD on. Got none.")
        if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > big_t + 1e-9):
            raise TrainingError(
                "Expected Pareto/NBD inputs with x >= 0 and 0 <= t_x <= T. Got rows breaking that."
            )
        if len(x) > max_rows:
            idx = np.random.default_rng(seed).choice(len(x), max_rows, replace=False)
            x, t_x, big_t = x[idx], t_x[idx], big_t[idx]
        t_x = np.minimum(t_x, big_t)
        scale = max(float(np.mean(big_t)), 1e-9)
        nodes = _Nodes(t_x, big_t)
        origin = np.zeros(4)
        if start is not None and all(np.isfinite(v) and v > 0 for v in start):
            r0, alpha0, s0, beta0 = start
            origin = np.clip(np.log([r0, alpha0 / scale, s0, beta0 / scale]), -8.0, 8.0)

        def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            params[1] *= scale
            params[3] *= scale
            value, grad = _nll_grad(params, x, t_x, big_t, nodes)
            if not (np.isfinite(value) and np.isfinite(grad).all()):
                # Steer the line search back: L-BFGS-B shortens a step whose value rose.
                return 1e10, np.zeros(4)
            # Chain rule through params = exp(log_params) (times scale for alpha, beta).
            return value, grad * params

        # The analytic gradient costs one likelihood pass; finite differences cost five
        # (4 parameters + the value), which made this fit most of the BTYD candidates' time.
        with one_blas_thread():
            best = optimize.minimize(
                nll, origin, jac=True, method="L-BFGS-B", bounds=[(-8.0, 8.0)] * 4
            )
        if not np.isfinite(best.fun) or best.fun >= 1e10:
            raise TrainingError("Pareto/NBD fit did not converge.")
        r, alpha, s, beta = np.exp(best.x)
        self.r, self.s = float(r), float(s)
        self.alpha, self.beta = float(alpha * scale), float(beta * scale)
        self.log_likelihood = float(np.sum(_log_likelihood(self._params(), x, t_x, big_t)))
        return self

    def _params(self) -> np.ndarray:
        return np.array([self.r, self.alpha, self.s, self.beta])

    def prob_alive(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """P(still alive at T | x, t_x, T)."""
        return pareto_prob_alive(self._tuple(), x, t_x, big_t)

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        """E[number of purchases in (T, T + t] | x, t_x, T] (see :mod:`scoring.btyd`)."""
        return pareto_expected_purchases(self._tuple(), t, x, t_x, big_t)

    def prob_no_purchase(
        self, t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
    ) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T) (see :mod:`scoring.btyd`)."""
        return pareto_prob_no_purchase(self._tuple(), t, x, t_x, big_t)

    def _tuple(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.s, self.beta)
