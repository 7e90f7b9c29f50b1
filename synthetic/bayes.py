"""How well can anything predict from the events? A Bayes bound for the synthetic data.

The oracles of :mod:`synthetic.generator` know each customer's latent state at the cutoff
(active, leaving, dropped out) and latent rates. A model sees only the event history, so
the gap between a model and the oracle has two parts: what the model fails to learn, and
what the history cannot tell. This module measures the second part.

:func:`bayes_scores` returns, for each customer in the training population at a cutoff
(at least one purchase before it), the exact posterior predictions

    P(no purchase in the horizon | I)  and  E[net spend in the horizon | I]

for an information set ``I`` that contains the whole observable history *and more*:

* unknown (integrated out under the generator's priors): the state path (when leaving
  started, naturally or at a bad purchase, and when the customer dropped out), the leave
  hazard, the purchase rate, the browse and login rates, and the mean spend;
* known (given to the bound for free, beyond the events): every other latent, i.e. each
  order's refund and complaint outcome and the drawn times of those events (also of
  events never emitted because the customer had dropped out first, or due after the
  cutoff), the refund and complaint probabilities, which browses lead up to an order, the
  exact age and the attribute multipliers.

Since ``I`` refines the observable history, ranking by these posteriors is optimal for
``I``: for every pair of customers, ordering by P(churn | I) maximises the expected
count of correctly ordered (churner, non-churner) pairs, and ordering by E[value | I]
maximises the expected sum of value times rank (rearrangement inequality). So no score
computed from the history alone can have a higher *expected* AUC or normalised Gini than
these scores: they bound what the oracle gap can shrink to. (The bound is loose, since
``I`` gives away more than the events show.)

Computation, per customer: the leave start ``tau`` on a midpoint grid over the last
``trunc_days`` before the last event (a longer leaving spell has prior weight below
``exp(-trunc_days / leaving_days_mean)``), plus an atom at each order with a bad outcome
(which starts the leaving state with the generator's probability); the leave hazard in
closed form in the path prior (Gamma) and by generalised Gauss-Laguerre in the horizon;
the dropout time by Gauss-Legendre over the final silence (it must follow
every emitted event and precede every drawn-but-unemitted refund or complaint); the
browse and login rates in closed form (Gamma given the purchase rate); the purchase rate
on a log grid (the trapezoid rule is spectrally accurate for smooth peaks); the mean
spend by Gamma-Gamma conjugacy. The horizon is the oracles' Markov chain (daily-mean
seasonality). Expected value also subtracts refunds, due in the horizon, of orders
bought before the cutoff, which the label counts. Neglected: the ``purchase_rate_max``
cap (prior mass below 1e-5), the rounding of amounts to cents, the 1e-5 of duplicate
browses dropped, and leave triggers by purchases after the cutoff in the refund term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln, logsumexp, roots_genlaguerre

from features.errors import FeaturesError
from synthetic.generator import (
    DateLike,
    SyntheticData,
    _Clock,
    _utc,
    horizon_no_purchase,
    horizon_purchases,
    seasonality,
)

__all__ = ["BayesGrid", "bayes_scores"]

_KEY = 1_000_000.0  # customer stride in the (customer, time) search keys; times < 1e6 days


@dataclass(frozen=True)
class BayesGrid:
    """Quadrature sizes (defaults are converged to 1e-4 in AUC and Gini).

    Attributes:
        tau_nodes: Midpoints for the leave start over the customer's window.
        x_nodes: Gauss-Legendre nodes for the dropout time.
        rate_nodes: Log-spaced nodes for the purchase rate.
        trunc_days: How far before the last event a leave start is considered.
        chunk: Customers per vectorised block (memory ~ chunk x tau x x x rate floats).
    """

    tau_nodes: int = 100
    x_nodes: int = 12
    rate_nodes: int = 32
    trunc_days: float = 300.0
    chunk: int = 40


class _Runs:
    """Sorted event times per customer, for counts and sums of events after a time."""

    def __init__(
        self, pos: np.ndarray, t: np.ndarray, n: int, values: np.ndarray | None = None
    ) -> None:
        key = pos * _KEY + t
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.cumsum = np.concatenate([[0.0], np.cumsum(t[order])])
        self.stop = np.searchsorted(self.key, (np.arange(n) + 1) * _KEY)
        self.start = np.searchsorted(self.key, np.arange(n) * _KEY)
        extra = np.zeros(t.size) if values is None else values[order]
        self.values_cumsum = np.concatenate([[0.0], np.cumsum(extra)])

    def values_before(self, rows: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Sum of the run's values over events strictly before ``tau``."""
        k = np.searchsorted(self.key, rows[:, None] * _KEY + tau, side="left")
        return self.values_cumsum[k] - self.values_cumsum[self.start[rows]][:, None]

    def after(self, rows: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count of events strictly after ``tau`` and the sum of their ``t - tau``."""
        k = np.searchsorted(self.key, rows[:, None] * _KEY + tau, side="right")
        b = self.stop[rows][:, None]
        count = b - k
        return count, self.cumsum[b] - self.cumsum[k] - tau * count


class _Faded:
    """K(tau, x) = integral over [tau, x] of s(t) exp(-(t - tau) / fade) dt.

    Cumulative integrals restart every ``block`` days so that the scale factor
    exp((tau - ref) / fade) stays small (no cancellation between huge numbers).
    """

    def __init__(self, clock: _Clock, fade: float, days: int, block: float = 30.0) -> None:
        self.hours = clock.t_grid
        s = np.diff(clock.s_grid)  # integral of s over each hour
        mid = self.hours[:-1] + 1 / 48
        self.refs = np.arange(0.0, days + block, block)
        self.block, self.fade = block, fade
        self.table = np.array(
            [
                np.concatenate(
                    [[0.0], np.cumsum(np.where(mid > r, s * np.exp(-(mid - r) / fade), 0))]
                )
                for r in self.refs
            ]
        )

    def __call__(self, tau: np.ndarray, x: np.ndarray) -> np.ndarray:
        tau, x = np.broadcast_arrays(tau, x)
        block = np.minimum((tau // self.block).astype(np.int64), self.refs.size - 1)
        out = np.empty(tau.shape)
        for b in np.unique(block):
            sel = block == b
            g = self.table[b]
            out[sel] = np.exp((tau[sel] - self.refs[b]) / self.fade) * (
                np.interp(x[sel], self.hours, g) - np.interp(tau[sel], self.hours, g)
            )
        return out


@dataclass(frozen=True)
class _RateNodes:
    """The purchase-rate nodes of a block of customers, with their activity counts."""

    log_node: np.ndarray  # (k, K): log prior mass x lambda^n
    lam: np.ndarray  # (k, K)
    browse_scale: np.ndarray  # (k, K): Gamma scale of the browse rate given lambda
    login_scale: np.ndarray
    n_browse: np.ndarray  # (k, 1, 1)
    n_login: np.ndarray

    def log_weights(self, e_p: np.ndarray, e_b: np.ndarray) -> np.ndarray:
        """log weight (k, h, K) of each rate node under purchase / activity exposures (k, h).

        The browse and login rates are integrated out in closed form.
        """
        e_p, e_b = e_p[..., None], e_b[..., None]
        return (
            self.log_node[:, None, :]
            - self.lam[:, None, :] * e_p
            + _log_gamma_poisson(self.n_browse, self.browse_scale[:, None, :], e_b)
            + _log_gamma_poisson(self.n_login, self.login_scale[:, None, :], e_b)
        )


def _log_gamma_poisson(n: np.ndarray, scale: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """log of the integral of r^n exp(-r E) over r ~ Gamma(2, scale), up to n-only terms."""
    return gammaln(2 + n) + n * np.log(scale) - (2 + n) * np.log1p(scale * exposure)


def bayes_scores(
    data: SyntheticData,
    *,
    cutoff: DateLike,
    horizon_days: int,
    grid: BayesGrid | None = None,
) -> pd.DataFrame:
    """Posterior churn probability and expected value given the history and more.

    Args:
        data: Output of ``generate(..., trace=True)``.
        cutoff: The as-of instant (within the generated period).
        horizon_days: Label horizon H in days.
        grid: Quadrature sizes.

    Returns:
        One row per customer with a purchase before the cutoff, indexed by
        ``customer_id``: ``p_no_purchase``, ``expected_net_spend`` and the posterior
        state probabilities ``p_active``, ``p_leaving``, ``p_dropped``.

    Raises:
        FeaturesError: ``data`` has no trace, or the cutoff is outside the period.
    """
    if data.trace is None:
        raise FeaturesError("bayes_scores needs generate(..., trace=True). Got no trace.")
    grid = grid or BayesGrid()
    tr, cfg, truth = data.trace, data.config, data.truth
    c = float((_utc(cutoff, "cutoff") - tr.origin) / pd.Timedelta(days=1))
    if not 0 < c <= tr.days:
        raise FeaturesError(
            f"The cutoff must lie within the generated {tr.days} days. Got day {c:.1f}."
        )
    n_all = tr.age.size
    before = tr.purchase_t < c
    pop = np.flatnonzero(np.bincount(tr.purchase_customer[before], minlength=n_all))
    n = pop.size
    pos = np.full(n_all, -1)
    pos[pop] = np.arange(n)
    clock = _Clock.build(tr.origin, tr.days, cfg)
    S = clock.op
    faded = _Faded(clock, cfg.fade_days, tr.days)
    nu, phi, fade = 1.0 / cfg.leaving_days_mean, cfg.leaving_purchase_factor, cfg.fade_days

    def latent(name: str) -> np.ndarray:
        return truth[name].to_numpy(dtype=np.float64)[pop]

    signup = (pd.to_datetime(truth["signup_at"], utc=True) - tr.origin) / pd.Timedelta(days=1)
    s0 = signup.to_numpy(dtype=np.float64)[pop]
    # Leave hazard mu ~ Gamma(a, rate b): E[exp(-mu T)] = (b / (b + T))^a and
    # E[mu exp(-mu T)] = (a / b) (b / (b + T))^(a + 1).
    mu_a = cfg.leave_hazard_shape
    mu_b = mu_a / (cfg.leave_hazard_mean * tr.churn_multiplier[pop])

    def log_survive(rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        b = mu_b[rows].reshape(rows.shape + (1,) * (t.ndim - 1))
        return mu_a * np.log(b / (b + np.maximum(t, 0.0)))

    def log_leave_density(rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        b = mu_b[rows].reshape(rows.shape + (1,) * (t.ndim - 1))
        return np.log(mu_a / b) + (mu_a + 1) * np.log(b / (b + np.maximum(t, 0.0)))

    q = latent("leave_prob_per_purchase")
    refund_prob_share = latent("expected_refund_share")

    # Purchases before the cutoff: counts, and runs carrying log P(no leave start there).
    p_cust, p_t = tr.purchase_customer[before], tr.purchase_t[before]
    n_p = np.bincount(pos[p_cust], minlength=n).astype(np.float64)
    # P(an order starts the leaving state | active): by its refund / complaint outcome.
    p_leave = np.where(
        tr.purchase_complained[before],
        cfg.leave_after_complaint,
        np.where(tr.purchase_refunded[before], cfg.leave_after_refund, 0.0),
    )
    purchases = _Runs(pos[p_cust], p_t, n, values=np.log1p(-p_leave))
    bad = p_leave > 0
    bad_pos, bad_t, bad_p = pos[p_cust[bad]], p_t[bad], p_leave[bad]
    bad_order = np.argsort(bad_pos, kind="stable")
    bad_pos, bad_t, bad_p = bad_pos[bad_order], bad_t[bad_order], bad_p[bad_order]
    bad_start = np.searchsorted(bad_pos, np.arange(n + 1))
    last_purchase = np.full(n, -np.inf)
    np.maximum.at(last_purchase, pos[p_cust], p_t)
    last_event = last_purchase.copy()  # the dropout follows every emitted event...
    silent_by = np.full(n, np.inf)  # ...and precedes every drawn event never emitted
    dropout_final = (
        (pd.to_datetime(truth["dropout_at"], utc=True) - tr.origin) / pd.Timedelta(days=1)
    ).to_numpy(dtype=np.float64, na_value=np.inf)
    for order, t_drawn in ((tr.refund_order, tr.refund_t), (tr.complaint_order, tr.complaint_t)):
        who = tr.purchase_customer[order]
        seen = (t_drawn < c) & (pos[who] >= 0)
        # Emitted iff drawn before the dropout (the truth's dropout is ceiled to seconds).
        emitted = t_drawn < dropout_final[who]
        np.maximum.at(last_event, pos[who[seen & emitted]], t_drawn[seen & emitted])
        np.minimum.at(silent_by, pos[who[seen & ~emitted]], t_drawn[seen & ~emitted])
    counts = []
    background = []
    for who, t in ((tr.browse_customer, tr.browse_t), (tr.login_customer, tr.login_t)):
        keep = (t < c) & (pos[who] >= 0)
        counts.append(np.bincount(pos[who[keep]], minlength=n).astype(np.float64))
        background.append((pos[who[keep]], t[keep]))
        np.maximum.at(last_event, pos[who[keep]], t[keep])
    n_browse, n_login = counts
    activity = _Runs(
        np.concatenate([background[0][0], background[1][0]]),
        np.concatenate([background[0][1], background[1][1]]),
        n,
    )

    # Purchase-rate nodes: a log grid wide enough for every state hypothesis.
    m_rate = tr.rate_multiplier[pop]
    shape, scale = cfg.purchase_rate_shape, cfg.purchase_rate_mean / cfg.purchase_rate_shape
    exposure_max = S(np.full(n, c)) - S(s0)
    exposure_min = phi * (S(last_purchase) - S(s0))
    lo = stats.gamma.ppf(1e-7, shape + n_p, scale=1 / (1 / (scale * m_rate) + exposure_max))
    hi = stats.gamma.ppf(1 - 1e-7, shape + n_p, scale=1 / (1 / (scale * m_rate) + exposure_min))
    lo, hi = lo * 0.3, np.minimum(hi * 3, cfg.purchase_rate_max)
    k_nodes = grid.rate_nodes
    step = (np.log(hi / lo) / k_nodes)[:, None]
    log_lam = np.log(lo)[:, None] + (np.arange(k_nodes) + 0.5)[None, :] * step
    lam = np.exp(log_lam)
    log_prior = stats.gamma.logpdf(lam / m_rate[:, None], shape, scale=scale) - np.log(
        m_rate[:, None]
    )
    # Prior density times d(lambda) = lambda d(log lambda), times the purchase likelihood's
    # state-free part lambda^n (the exposure part depends on the state path).
    log_node = log_prior + log_lam + np.log(step) + n_p[:, None] * log_lam
    rel = (lam / cfg.purchase_rate_mean) ** 0.4
    browse_scale = 0.5 * cfg.browse_rate_mean * rel
    login_scale = 0.5 * cfg.login_rate_mean * rel

    # The horizon from each state, for every rate node (the oracles' chain).
    hours = pd.date_range(_utc(cutoff, "cutoff"), periods=horizon_days * 24, freq="h")
    daily = seasonality(hours, cfg).reshape(horizon_days, 24).mean(axis=1)
    q2 = q[:, None]

    def horizon(a0: np.ndarray, b0: np.ndarray, mu2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kw = {"lam": lam, "mu": mu2, "nu": nu, "phi": phi, "daily": daily}
        return horizon_no_purchase(a0, b0, **kw), horizon_purchases(a0, b0, q=q2, **kw)

    one, zero = np.ones_like(lam), np.zeros_like(lam)
    # Given active at the cutoff, mu ~ Gamma(a, rate b + c - s0).
    mu_rate_active = mu_b + np.maximum(c - s0, 0.0)
    nodes_mu, weights_mu = roots_genlaguerre(8, mu_a - 1)
    weights_mu = weights_mu / weights_mu.sum()
    churn_active, bought_active = np.zeros_like(lam), np.zeros_like(lam)
    for x_mu, w_mu in zip(nodes_mu, weights_mu, strict=True):
        f, g = horizon(one, zero, (x_mu / mu_rate_active)[:, None])
        churn_active += w_mu * f
        bought_active += w_mu * g
    # Leaving: mu no longer matters (it only moves active customers).
    churn_leaving, bought_leaving = horizon(zero, one, np.zeros_like(one))

    x_nodes, x_weights = np.polynomial.legendre.leggauss(grid.x_nodes)
    out = {name: np.zeros(n) for name in ("p_active", "p_leaving", "p_dropped", "churn", "bought")}
    s_c = S(np.asarray(c))
    for start in range(0, n, grid.chunk):
        rows = np.arange(start, min(start + grid.chunk, n))
        k = rows.size
        # Leave starts: natural, with no bad order before it having started it; or at a
        # bad order (an atom each).
        begin = np.maximum(s0[rows], np.minimum(last_event[rows], c) - grid.trunc_days)
        width = np.maximum(c - begin, 0.0)
        m = grid.tau_nodes
        tau = begin[:, None] + (np.arange(m) + 0.5)[None, :] / m * width[:, None]
        with np.errstate(divide="ignore"):
            log_w = np.log(width[:, None] / m) + log_leave_density(rows, tau - s0[rows, None])
        n_bad = bad_start[rows + 1] - bad_start[rows]
        slots = max(int(n_bad.max()), 1)
        j = np.arange(slots)[None, :]
        has = j < n_bad[:, None]
        at = np.minimum(bad_start[rows][:, None] + j, max(bad_t.size - 1, 0))
        atom_t = np.where(has, bad_t[at] if bad_t.size else c, c)
        with np.errstate(divide="ignore"):
            atom_w = np.where(
                has,
                log_survive(rows, atom_t - s0[rows, None])
                + np.log(bad_p[at] if bad_p.size else 1.0),
                -np.inf,
            )
        tau = np.concatenate([tau, atom_t], axis=1)
        log_w = np.concatenate([log_w, atom_w], axis=1)
        log_w = log_w + purchases.values_before(rows, tau)
        # Events after tau happen at the leaving intensities: purchases at phi x the rate,
        # browses and logins faded by exp(-(t - tau) / fade).
        n_after, _ = purchases.after(rows, tau)
        _, faded_sum = activity.after(rows, tau)
        log_w = log_w + n_after * np.log(phi) - faded_sum / fade
        s_tau = S(tau)
        active_part = s_tau - S(s0[rows])[:, None]
        nodes = _RateNodes(
            log_node[rows],
            lam[rows],
            browse_scale[rows],
            login_scale[rows],
            n_browse[rows, None, None],
            n_login[rows, None, None],
        )

        def rates(e_p: np.ndarray, e_b: np.ndarray, *, r: _RateNodes = nodes) -> np.ndarray:
            return r.log_weights(e_p, e_b)

        # Leaving at the cutoff.
        open_ended = (silent_by[rows] >= c)[:, None]
        h_leave = np.where(open_ended, log_w - nu * (c - tau), -np.inf)
        e_p = active_part + phi * (s_c - s_tau)
        e_b = active_part + faded(tau, np.full_like(tau, c))
        log_leave = logsumexp(h_leave[..., None] + rates(e_p, e_b), axis=1)
        # Dropped out at x, between the last event and the cutoff.
        x_lo = np.maximum(last_event[rows, None], tau)
        x_hi = np.broadcast_to(np.minimum(c, silent_by[rows])[:, None], tau.shape)
        span = np.maximum(x_hi - x_lo, 0.0)
        x = x_lo[..., None] + (x_nodes + 1)[None, None, :] / 2 * span[..., None]
        tau3 = np.broadcast_to(tau[..., None], x.shape)
        e_p = (active_part[..., None] + phi * (S(x) - s_tau[..., None])).reshape(k, -1)
        e_b = (active_part[..., None] + faded(tau3, x)).reshape(k, -1)
        with np.errstate(divide="ignore"):
            h_drop = (
                log_w[..., None]
                + np.log(nu)
                - nu * (x - tau3)
                + np.log(span[..., None] / 2 * x_weights)
            ).reshape(k, -1)
        log_drop = logsumexp(h_drop[..., None] + rates(e_p, e_b), axis=1)
        # Still active: no leave start before the cutoff.
        ok = silent_by[rows] >= c
        e_a = (s_c - S(s0[rows]))[:, None]
        no_bad_start = purchases.values_before(rows, np.full((rows.size, 1), c))[:, 0]
        log_active = (
            np.where(ok, log_survive(rows, c - s0[rows]) + no_bad_start, -np.inf)[:, None]
            + rates(e_a, e_a)[:, 0, :]
        )
        total = logsumexp(np.stack([log_active, log_leave, log_drop]), axis=(0, 2))
        wa, wl, wd = (np.exp(v - total[:, None]) for v in (log_active, log_leave, log_drop))
        out["p_active"][rows] = wa.sum(1)
        out["p_leaving"][rows] = wl.sum(1)
        out["p_dropped"][rows] = wd.sum(1)
        out["churn"][rows] = (wa * churn_active[rows] + wl * churn_leaving[rows] + wd).sum(1)
        out["bought"][rows] = (wa * bought_active[rows] + wl * bought_leaving[rows]).sum(1)

    # Mean spend: x_i = amount_i / price factor_i ~ Gamma(p, rate p / spend_mean) with
    # spend_mean = p m / nu_s and nu_s ~ Gamma(q, rate g): conjugate in nu_s.
    ps, qs, gs = cfg.spend_shape, cfg.spend_q, cfg.spend_gamma
    units = np.bincount(
        pos[p_cust],
        weights=(tr.purchase_amount / tr.purchase_price_factor)[before],
        minlength=n,
    )
    m_spend = tr.spend_multiplier[pop]
    spend = ps * (m_spend * gs + units) / (qs + n_p * ps - 1)
    # Refunds of earlier orders that fall in the horizon (if the customer is still there).
    who = pos[tr.purchase_customer[tr.refund_order]]
    due = (
        (tr.purchase_t[tr.refund_order] < c)
        & (tr.refund_t >= c)
        & (tr.refund_t < c + horizon_days)
        & (who >= 0)
    )
    who, d = who[due], tr.refund_t[due] - c
    m_ = mu_a / mu_rate_active[who]  # posterior mean hazard given active at the cutoff
    # Active: not (leave within d and exit before d); leaving: no exit within d.
    left_and_gone = 1 - np.exp(-m_ * d) - m_ / (nu - m_) * (np.exp(-m_ * d) - np.exp(-nu * d))
    still_there = out["p_active"][who] * (1 - left_and_gone) + out["p_leaving"][who] * np.exp(
        -nu * d
    )
    due_refunds = np.bincount(who, weights=tr.refund_amount[due] * still_there, minlength=n)
    value = out["bought"] * spend * (1 - refund_prob_share) - due_refunds
    return pd.DataFrame(
        {
            "p_no_purchase": np.clip(out["churn"], 0.0, 1.0),
            "expected_net_spend": value,
            "p_active": out["p_active"],
            "p_leaving": out["p_leaving"],
            "p_dropped": out["p_dropped"],
        },
        index=pd.Index(truth["customer_id"].to_numpy()[pop], name="customer_id"),
    )
