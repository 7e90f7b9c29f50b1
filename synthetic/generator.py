"""Synthetic customers and events with a known generative truth, for tests, demos and oracles.

The generator simulates a retail business whose customers register throughout the period,
buy at heterogeneous rates, spend heterogeneous amounts, become unhappy, fade and leave.
Every latent quantity is returned in a ``truth`` frame, and :func:`oracle_churn_probability`
/ :func:`oracle_expected_value` turn it into the best achievable predictions at a cutoff,
so models trained on the observable events can be scored against a ceiling.

Generative model (times are days since ``start``; rates are per day)
--------------------------------------------------------------------
Calendar. A seasonality multiplier ``s(t) = intraday(hour) * weekly(weekday) * yearly(date)``
in the customers' local time (``utc_offset_hours``, default UTC+8; each factor has mean 1
over its cycle): evenings and weekends are busier, winter is busier than summer, and
shopping festivals (18 June, 11 November, 12 December) spike. Timestamps are stored in
UTC, at whole seconds. Every process below has intensity ``rate * s(t)``; it is simulated
in operational time
``S(t) = integral of s``, where it is a homogeneous Poisson process (the time-change
theorem), and mapped back with ``S^-1`` (linear interpolation on an hourly grid).

Customers. Signups arrive throughout ``[start, end]`` with a growing trend times ``s(t)``.
Attributes (``features.schema.default_attributes``): gender, birth year (age 18+,
right-skewed), region and a city within it, acquisition channel, occupation (depends on
age). A share of customers (``never_buy_share``, higher for the partner channel) registers
and never buys: they only log in and browse.

Purchases (Pareto/NBD-like, with a two-stage exit). A buyer's base purchase rate is
``purchase_rate = lambda ~ Gamma(shape, mean) * m_rate(attributes)``. A customer is in one
of three states:

* *active*: buys at ``lambda * s(t)``, browses and logs in at their own rates;
* *leaving* (entered at ``leaving_at``): buys at ``leaving_purchase_factor * lambda``;
  browsing and logins fade as ``exp(-(t - leaving_at) / fade_days)``: the visible
  disengagement in the weeks before dropout;
* *dropped out* (at ``dropout_at = leaving_at + Exp(leaving_exit_hazard)``): no events at all.

An active customer starts leaving at a constant hazard ``leave_hazard = mu ~ Gamma *
m_churn(attributes)`` (exponential lifetime, as in Pareto/NBD) or right after a bad
purchase: each purchase is refunded with probability ``refund_prob`` and draws a complaint
with probability ``complaint_prob`` (times ``complaint_after_refund_factor`` when refunded);
a complaint moves the customer to *leaving* with probability ``leave_after_complaint``, a
refund without complaint with ``leave_after_refund``. The per-purchase probability of that
transition is ``leave_prob_per_purchase`` in the truth. Everything is Markov in the
state, which is why the oracles below can be computed exactly.

Why Pareto/NBD-like rather than BG/NBD: BG/NBD drops customers out at purchase instants,
so nothing observable could precede the dropout. A dropout in continuous time, reached
through a *leaving* state, lets disengagement show (fading browsing, slower buying) and
keeps the state at any cutoff a small Markov chain the oracles can solve.

Spend (Gamma-Gamma). Per-order spend is ``Gamma(spend_shape, spend_mean / spend_shape)``
times a category price factor (normalised per customer so the mean stays ``spend_mean``);
the per-customer mean is ``spend_mean = spend_shape / nu * m_spend(attributes)`` with
``nu ~ Gamma(spend_q, 1 / spend_gamma)``, i.e. inverse-Gamma distributed as in Fader and
Hardie's Gamma-Gamma model. Orders carry a category (a favourite category with probability
``favourite_category_share``, tilted by gender), a Zipf-popular product, a quantity and a
unique order id. Refunds (same order id, after 1 hour to ~2 weeks) give back the whole
amount or a uniform 10-90% share; complaints follow a purchase by hours to days and carry
its order id.

Browsing and logins: Poisson at ``browse_rate`` / ``login_rate`` (Gamma-distributed,
correlated with ``lambda``) while active, fading while leaving; each purchase is also
preceded by ``Poisson(browses_per_purchase)`` browses of the same product within hours.
Every customer logs in at signup.

Attribute effects (multiplicative): the app channel buys more and leaves less, partners
buy less and leave more; ages 25-45 buy most; spend grows with age, is highest for
managers and the self-employed and lowest for students, and is higher in the east and in
first-tier cities.

Truth and oracles
-----------------
``truth`` has one row per customer: ``customer_id``, ``signup_at``, ``never_buys``,
``purchase_rate``, ``spend_mean``, ``leave_hazard``, ``leave_prob_per_purchase``,
``leaving_exit_hazard``, ``leaving_purchase_factor``, ``expected_refund_share``,
``browse_rate``, ``login_rate``, ``leaving_at`` and ``dropout_at`` (NaT when not reached
by ``end``). Given the state at a cutoff (known from ``leaving_at``/``dropout_at``), the
future is a two-state Markov chain with Poisson purchases, whose no-purchase probability
and expected purchase count over the horizon are solved in closed form day by day.

The oracles are exact for this model up to two documented simplifications: seasonality
enters as daily means over the horizon, and a refund is counted against the order it
refunds (it follows within days, so it can fall just outside the horizon).

Performance: all per-customer work is vectorised with numpy; the only Python loop runs
over the *n-th purchase* (a few hundred rounds), each round over all customers still
buying. Id strings are assembled as fixed-width Arrow buffers, small vocabularies are
gathered with pyarrow, and events are sorted with one packed int64 key. Two browses or
logins of one customer that land in the same second would be indistinguishable rows;
the repeats (about 1e-5 of them) are dropped. Deterministic: the same arguments and seed
give identical frames (and identical files from :func:`write_synthetic`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features.errors import FeaturesError
from features.schema import (
    FactsConfig,
    check_customers,
    check_events,
)

__all__ = [
    "CATEGORIES",
    "SyntheticConfig",
    "SyntheticData",
    "SyntheticTrace",
    "generate",
    "oracle_churn_probability",
    "oracle_expected_value",
    "seasonality",
    "write_synthetic",
]

DateLike = str | date | datetime | pd.Timestamp
Progress = Callable[[str], None]

DAY_US = 86_400_000_000

GENDERS = ("female", "male", "other", "unknown")
GENDER_P = (0.48, 0.44, 0.02, 0.06)
REGIONS = ("north", "south", "east", "west", "central")
REGION_P = (0.22, 0.22, 0.26, 0.15, 0.15)
REGION_RATE = (1.0, 1.05, 1.12, 0.88, 0.95)
REGION_SPEND = (1.0, 1.05, 1.18, 0.85, 0.9)
CITIES = (
    ("Beijing", "Tianjin", "Shijiazhuang", "Taiyuan"),
    ("Guangzhou", "Shenzhen", "Xiamen", "Nanning"),
    ("Shanghai", "Hangzhou", "Nanjing", "Suzhou"),
    ("Chengdu", "Chongqing", "Xi'an", "Kunming"),
    ("Wuhan", "Changsha", "Zhengzhou", "Hefei"),
)
CITY_P = (0.4, 0.25, 0.2, 0.15)
FIRST_TIER = frozenset({"Beijing", "Shanghai", "Guangzhou", "Shenzhen"})
CHANNELS = ("web", "app", "store", "partner")
CHANNEL_P = (0.35, 0.40, 0.15, 0.10)
CHANNEL_RATE = (1.0, 1.3, 0.8, 0.7)
CHANNEL_CHURN = (1.0, 0.8, 0.9, 1.5)
CHANNEL_NEVER_BUY = (1.0, 0.8, 0.6, 1.8)
OCCUPATIONS = (
    "student",
    "engineer",
    "teacher",
    "healthcare",
    "sales",
    "manager",
    "self-employed",
    "retired",
    "other",
)
OCCUPATION_SPEND = (0.55, 1.15, 0.95, 1.05, 1.0, 1.45, 1.2, 0.85, 0.9)
CATEGORIES = (
    "electronics",
    "apparel",
    "home",
    "beauty",
    "grocery",
    "sports",
    "books",
    "toys",
    "health",
    "jewelry",
)
CATEGORY_P = (0.12, 0.16, 0.12, 0.1, 0.16, 0.08, 0.08, 0.06, 0.08, 0.04)
CATEGORY_PRICE = (2.2, 1.0, 1.3, 0.8, 0.45, 1.1, 0.5, 0.8, 0.7, 2.5)
# Gender tilts of category preference (female, male, other, unknown), multiplicative.
CATEGORY_GENDER_TILT = (
    (0.7, 1.5, 1.0, 1.0),
    (1.4, 0.7, 1.0, 1.0),
    (1.1, 0.9, 1.0, 1.0),
    (1.8, 0.4, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0),
    (0.7, 1.4, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0),
    (1.1, 0.9, 1.0, 1.0),
    (1.1, 0.9, 1.0, 1.0),
    (1.4, 0.6, 1.0, 1.0),
)
PRODUCTS_PER_CATEGORY = 2000
FESTIVALS = ((6, 18, 1.0), (11, 11, 2.5), (12, 12, 0.8))  # (month, day, extra multiplier)
# fmt: off
INTRADAY = (
    0.35, 0.2, 0.12, 0.1, 0.1, 0.15, 0.35, 0.6, 0.85, 1.0, 1.1, 1.25,
    1.35, 1.2, 1.05, 1.05, 1.1, 1.2, 1.35, 1.6, 1.85, 1.9, 1.5, 0.85,
)  # by local hour of day
# fmt: on
WEEKLY = (0.92, 0.9, 0.93, 0.97, 1.05, 1.15, 1.08)  # Monday first

# Event type codes: indices into _TYPES.
_TYPES = ("login", "browse", "purchase", "refund", "complaint")
_LOGIN, _BROWSE, _PURCHASE, _REFUND, _COMPLAINT = range(5)


class SyntheticConfig(BaseModel):
    """Knobs of the generative model (see the module docstring); defaults are the demo's.

    Rates are per day, shares are probabilities, ``*_mean`` are population means before
    attribute effects.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    never_buy_share: float = Field(default=0.22, ge=0, le=0.9)
    purchase_rate_mean: float = Field(default=0.03, gt=0, le=1)
    purchase_rate_shape: float = Field(default=0.9, gt=0)
    purchase_rate_max: float = Field(default=0.5, gt=0)
    spend_shape: float = Field(default=4.0, gt=0)
    spend_q: float = Field(default=4.0, gt=1)
    spend_gamma: float = Field(default=90.0, gt=0)
    leave_hazard_mean: float = Field(default=1 / 360, gt=0)
    leave_hazard_shape: float = Field(default=1.5, gt=0)
    leaving_days_mean: float = Field(default=30.0, gt=0)
    leaving_purchase_factor: float = Field(default=0.5, ge=0, le=1)
    fade_days: float = Field(default=14.0, gt=0)
    refund_prob_mean: float = Field(default=0.06, ge=0, lt=1)
    complaint_prob_mean: float = Field(default=0.025, ge=0, lt=1)
    complaint_after_refund_factor: float = Field(default=4.0, ge=1)
    leave_after_complaint: float = Field(default=0.3, ge=0, le=1)
    leave_after_refund: float = Field(default=0.08, ge=0, le=1)
    full_refund_share: float = Field(default=0.6, ge=0, le=1)
    browse_rate_mean: float = Field(default=0.08, ge=0)
    browse_rate_never_buyer: float = Field(default=0.04, ge=0)
    browses_per_purchase: float = Field(default=1.2, ge=0)
    login_rate_mean: float = Field(default=0.04, ge=0)
    favourite_category_share: float = Field(default=0.55, ge=0, le=1)
    signup_growth: float = Field(default=1.0, ge=0)
    yearly_amplitude: float = Field(default=0.15, ge=0, lt=1)
    festival_strength: float = Field(default=1.0, ge=0)
    utc_offset_hours: int = Field(default=8, ge=-12, le=14)


@dataclass(frozen=True)
class SyntheticData:
    """What :func:`generate` returns.

    Attributes:
        customers: Canonical customers table (``features.schema.check_customers``).
        events: Canonical events table, sorted by time (``check_events``).
        truth: One row per customer with the latent parameters and state changes.
        config: The generative model's parameters.
    """

    customers: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    config: SyntheticConfig
    trace: SyntheticTrace | None = None


@dataclass(frozen=True)
class SyntheticTrace:
    """The generator's latent draws below the ``truth`` table (``generate(trace=True)``).

    For research on what is knowable, e.g. :mod:`synthetic.bayes`. Times are days
    since ``origin`` (unrounded); customers are 0-based codes (``C0000001`` is 0).

    Attributes:
        origin: The ``start`` of the generated period (UTC midnight).
        days: Length of the period in days.
        age: Exact age in years at ``origin`` (the customers table has the birth year).
        rate_multiplier: Attribute effect on the purchase rate (``m_rate``).
        spend_multiplier: Attribute effect on the mean spend (``m_spend``).
        churn_multiplier: Attribute effect on the leave hazard (``m_churn``).
        natural_leave_at: When each customer would start leaving without bad purchases.
        purchase_customer, purchase_t, purchase_amount, purchase_price_factor: Every order.
        purchase_refunded, purchase_complained: The order's bad outcomes (drawn at the
            purchase; their events follow later, or never if the customer drops out first).
        purchase_leave_coin: Whether the order would start the leaving state, had the
            customer still been active (refund/complaint outcome and its coin flip).
        refund_order, refund_t, refund_amount: Every drawn refund (index into the orders),
            including those never emitted because the customer had dropped out first.
        complaint_order, complaint_t: Likewise for complaints.
        browse_customer, browse_t, login_customer, login_t: The background browse and
            login processes (not the browses that lead up to an order, nor signup logins).
    """

    origin: pd.Timestamp
    days: int
    age: np.ndarray
    rate_multiplier: np.ndarray
    spend_multiplier: np.ndarray
    churn_multiplier: np.ndarray
    natural_leave_at: np.ndarray
    purchase_customer: np.ndarray
    purchase_t: np.ndarray
    purchase_amount: np.ndarray
    purchase_price_factor: np.ndarray
    purchase_refunded: np.ndarray
    purchase_complained: np.ndarray
    purchase_leave_coin: np.ndarray
    refund_order: np.ndarray
    refund_t: np.ndarray
    refund_amount: np.ndarray
    complaint_order: np.ndarray
    complaint_t: np.ndarray
    browse_customer: np.ndarray
    browse_t: np.ndarray
    login_customer: np.ndarray
    login_t: np.ndarray


# ---------------------------------------------------------------- calendar


def _utc(value: DateLike, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise FeaturesError(f"The {what} must be a date like 2024-01-31. Got {value!r}.") from exc
    if ts is pd.NaT:
        raise FeaturesError(f"The {what} must be a date like 2024-01-31. Got {value!r}.")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _yearly_raw(
    day_of_year: np.ndarray, month: np.ndarray, day: np.ndarray, amp: float, festival: float
) -> np.ndarray:
    # Winter peak around the turn of the year; festival days on top.
    out = 1.0 + amp * np.cos(2 * np.pi * (day_of_year - 1) / 365.25)
    for m, d, extra in FESTIVALS:
        out = out + festival * extra * ((month == m) & (day == d))
    return out


def _yearly_norm(config: SyntheticConfig) -> float:
    days = pd.date_range("2023-01-01", "2023-12-31", freq="D")
    raw = _yearly_raw(
        days.day_of_year.to_numpy(),
        days.month.to_numpy(),
        days.day.to_numpy(),
        config.yearly_amplitude,
        config.festival_strength,
    )
    return float(raw.mean())


def seasonality(hours: pd.DatetimeIndex, config: SyntheticConfig | None = None) -> np.ndarray:
    """The calendar multiplier ``s(t)`` of every process, at the given (UTC) hours.

    A pure function of the calendar in the customers' local time (UTC plus
    ``config.utc_offset_hours``): intraday, weekly and yearly factors, each with mean 1
    over its own cycle, so a rate of ``r`` per day means about ``r`` events per day on
    average.
    """
    config = config or SyntheticConfig()
    local = hours.tz_localize(None) if hours.tz is not None else hours
    local = local + pd.Timedelta(hours=config.utc_offset_hours)
    intraday = np.asarray(INTRADAY) / np.mean(INTRADAY)
    weekly = np.asarray(WEEKLY) / np.mean(WEEKLY)
    yearly = _yearly_raw(
        local.day_of_year.to_numpy(),
        local.month.to_numpy(),
        local.day.to_numpy(),
        config.yearly_amplitude,
        config.festival_strength,
    ) / _yearly_norm(config)
    return intraday[local.hour.to_numpy()] * weekly[local.day_of_week.to_numpy()] * yearly


@dataclass(frozen=True)
class _Clock:
    """Operational time ``S(t)`` on an hourly grid from ``origin`` (t in days).

    ``S`` is piecewise linear between hours. ``inv`` is O(1) per value: it looks up a
    table over ``u`` whose cells are narrower than any hour's increment, so each cell
    holds at most one grid point and one comparison finds the hour (measured 2x faster
    than np.interp's binary search, which ``op`` keeps: there it is as fast).
    """

    origin: pd.Timestamp
    t_grid: np.ndarray
    s_grid: np.ndarray
    increments: np.ndarray
    cell: float
    lookup: np.ndarray | None

    @classmethod
    def build(cls, origin: pd.Timestamp, days: int, config: SyntheticConfig) -> _Clock:
        hours = pd.date_range(origin, periods=days * 24, freq="h")
        s = seasonality(hours, config)
        s_grid = np.concatenate([[0.0], np.cumsum(s / 24.0)])
        t_grid = np.arange(days * 24 + 1, dtype=np.float64) / 24.0
        increments = np.diff(s_grid)
        cell = float(increments.min()) * 0.999
        n_cells = int(s_grid[-1] / cell) + 2
        lookup = None
        if n_cells <= 20_000_000:  # extreme seasonality configs fall back to np.interp
            edges = np.arange(n_cells, dtype=np.float64) * cell
            lookup = np.searchsorted(s_grid, edges, side="right") - 1
            lookup = np.clip(lookup, 0, increments.size - 1).astype(np.int32)
        return cls(origin, t_grid, s_grid, increments, cell, lookup)

    def op(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.t_grid, self.s_grid)

    def inv(self, u: np.ndarray) -> np.ndarray:
        # Beyond the grid the answer only needs to be "after the end".
        u = np.asarray(u, dtype=np.float64)
        beyond = u >= self.s_grid[-1]
        if self.lookup is None:
            return np.where(beyond, np.inf, np.interp(u, self.s_grid, self.t_grid))
        inside = np.where(beyond, 0.0, np.maximum(u, 0.0))
        k = self.lookup[(inside / self.cell).astype(np.int64)].astype(np.int64)
        k += inside >= self.s_grid[k + 1]
        t = (k + (inside - self.s_grid[k]) / self.increments[k]) / 24.0
        return np.where(beyond, np.inf, t)


# ---------------------------------------------------------------- customers


def _choice(rng: np.random.Generator, n: int, p: Any) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(p) - 1)


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (n, k) matrix of unnormalised probabilities."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return (cum < u[:, None]).sum(axis=1).clip(0, probs.shape[1] - 1)


def _strings(
    values: list[str] | tuple[str, ...], codes: np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """A pandas string Series gathering ``values[codes]`` (null where not ``valid``)."""
    indices = pa.array(codes.astype(np.int32, copy=False), mask=None if valid is None else ~valid)
    taken = pc.take(pa.array(values, type=pa.string()), indices)
    return pd.Series(pd.arrays.ArrowStringArray(taken))


def _id_bytes(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width ASCII ids ``prefix + zero-padded number`` as an (n, len) uint8 matrix."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    out = np.empty((numbers.size, head.size + width), dtype=np.uint8)
    out[:, : head.size] = head
    rest = numbers.astype(np.int64)
    for k in range(width - 1, -1, -1):
        out[:, head.size + k] = 48 + rest % 10
        rest = rest // 10
    if rest.any():
        raise FeaturesError(f"Ids need more than {width} digits. Got up to {numbers.max()}.")
    return out


def _gather_strings(
    table: np.ndarray, codes: np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """A string Series of the fixed-width rows ``table[codes]`` (null where not ``valid``)."""
    picked = codes if valid is None else codes[valid]
    return _fixed_strings(np.take(table, picked, axis=0), codes.size, valid)


def _fixed_strings(rows: np.ndarray, n: int, valid: np.ndarray | None = None) -> pd.Series:
    """A string Series from fixed-width ASCII ``rows`` placed at the ``valid`` positions.

    The Arrow buffers are assembled directly, several times faster than formatting or
    gathering variable-width strings.
    """
    width = rows.shape[1]
    large = rows.shape[0] * width >= 2**31
    offsets = np.zeros(n + 1, dtype=np.int64 if large else np.int32)
    if valid is None:
        offsets[1:] = np.arange(1, n + 1, dtype=offsets.dtype)
    else:
        np.cumsum(valid, dtype=offsets.dtype, out=offsets[1:])
    np.multiply(offsets, width, out=offsets)
    arrow_type = pa.large_string() if large else pa.string()
    offsets_buf = pa.py_buffer(offsets)
    validity = None if valid is None else pa.array(valid).buffers()[1]
    null_count = 0 if valid is None else n - rows.shape[0]
    data = pa.py_buffer(np.ascontiguousarray(rows).ravel())
    array = pa.Array.from_buffers(
        arrow_type, n, [validity, offsets_buf, data], null_count=null_count
    )
    return pd.Series(pd.arrays.ArrowStringArray(array))


def _timestamps(us: np.ndarray) -> pd.Series:
    return pd.Series(us.view("datetime64[us]"), dtype=pd.DatetimeTZDtype("us", "UTC"))


# ---------------------------------------------------------------- generation


def generate(
    n_customers: int,
    *,
    start: DateLike = "2023-01-01",
    end: DateLike = "2024-12-31",
    seed: int,
    config: SyntheticConfig | None = None,
    progress: Progress | None = None,
    trace: bool = False,
) -> SyntheticData:
    """Simulate ``n_customers`` customers registering and acting from ``start`` to ``end``.

    Args:
        n_customers: Number of registered customers (>= 1).
        start: First day of the period (UTC midnight).
        end: Last day of the period, inclusive.
        seed: Seed of the random generator; the same arguments give identical output.
        config: Parameters of the generative model (defaults: :class:`SyntheticConfig`).
        progress: Called with a short message after each stage (for progress displays).
        trace: Also return the latent draws behind the events (:class:`SyntheticTrace`);
            the customers, events and truth are the same either way.

    Returns:
        Canonical customers and events, and the latent truth per customer.

    Raises:
        FeaturesError: A bad argument (message says which and what was expected).
    """
    config = config or SyntheticConfig()
    if isinstance(n_customers, bool) or not isinstance(n_customers, int) or n_customers < 1:
        raise FeaturesError(f"n_customers must be an int >= 1. Got {n_customers!r} instead.")
    t0 = _utc(start, "start date").normalize()
    t1 = _utc(end, "end date").normalize()
    if t1 < t0:
        raise FeaturesError(f"The end date must not be before the start date. Got {t0} > {t1}.")
    days = int((t1 - t0) / pd.Timedelta(days=1)) + 1
    note = progress or (lambda _msg: None)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    clock = _Clock.build(t0, days, config)
    t_end = float(days)

    cust = _simulate_customers(rng, n_customers, clock, t_end, config)
    natural_leave_at = cust["leave_at"].copy() if trace else None
    note(f"customers: {n_customers:,}")
    purchases = _simulate_purchases(rng, cust, clock, t_end, config)
    note(f"purchases: {len(purchases['cust']):,}")
    drawn: dict[str, np.ndarray] | None = {} if trace else None
    parts = _order_events(rng, cust, purchases, t_end, config, drawn)
    parts += _activity_events(rng, cust, clock, t_end, config)
    note("browse and login events simulated")
    recorded = None
    if drawn is not None and natural_leave_at is not None:
        recorded = _trace(t0, days, cust, natural_leave_at, purchases, parts, drawn)
    events = _assemble_events(parts, t0, n_customers, t_end)
    note(f"events: {len(events):,}")
    customers = _customers_frame(cust, t0, n_customers)
    truth = _truth_frame(cust, t0, t_end, config)
    check_customers(customers, FactsConfig())
    check_events(events)
    return SyntheticData(
        customers=customers, events=events, truth=truth, config=config, trace=recorded
    )


def _trace(
    origin: pd.Timestamp,
    days: int,
    cust: dict[str, np.ndarray],
    natural_leave_at: np.ndarray,
    purchases: dict[str, np.ndarray],
    parts: list[dict[str, Any]],
    drawn: dict[str, np.ndarray],
) -> SyntheticTrace:
    # Copies: assembling the events consumes the parts. The background processes are
    # the last two parts (_activity_events: signup logins, browses, logins).
    browse, login = parts[-2], parts[-1]
    return SyntheticTrace(
        origin=origin,
        days=days,
        age=cust["age"].copy(),
        rate_multiplier=cust["rate_multiplier"].copy(),
        spend_multiplier=cust["spend_multiplier"].copy(),
        churn_multiplier=cust["churn_multiplier"].copy(),
        natural_leave_at=natural_leave_at,
        purchase_customer=purchases["cust"].astype(np.int64),
        purchase_t=purchases["t"].copy(),
        purchase_amount=parts[0]["amount"].copy(),
        purchase_price_factor=drawn["price_factor"],
        purchase_refunded=purchases["refund"].astype(bool),
        purchase_complained=purchases["complaint"].astype(bool),
        purchase_leave_coin=purchases["coin"].astype(bool),
        refund_order=drawn["refund_order"],
        refund_t=drawn["refund_t"],
        refund_amount=drawn["refund_amount"],
        complaint_order=drawn["complaint_order"],
        complaint_t=drawn["complaint_t"],
        browse_customer=browse["cust"].astype(np.int64),
        browse_t=browse["t"].copy(),
        login_customer=login["cust"].astype(np.int64),
        login_t=login["t"].copy(),
    )


def _simulate_customers(
    rng: np.random.Generator, n: int, clock: _Clock, t_end: float, config: SyntheticConfig
) -> dict[str, np.ndarray]:
    # Signups: density proportional to (1 + growth * t / T) * s(t), by inverse CDF.
    trend = 1.0 + config.signup_growth * clock.t_grid[:-1] / t_end
    weight = np.diff(clock.s_grid) * trend
    cum = np.concatenate([[0.0], np.cumsum(weight)])
    signup = np.interp(rng.random(n) * cum[-1], cum, clock.t_grid)

    gender = _choice(rng, n, GENDER_P)
    age = np.clip(18.0 + rng.gamma(3.0, 7.0, n), 18.0, 90.0)
    region = _choice(rng, n, REGION_P)
    city_in_region = _choice(rng, n, CITY_P)
    channel = _choice(rng, n, CHANNEL_P)
    # Occupation depends on age: students young, retirees old.
    occ_p = np.tile(np.array([0.04, 0.16, 0.1, 0.1, 0.14, 0.1, 0.1, 0.0, 0.16]), (n, 1))
    occ_p[:, 0] += np.where(age < 24, 1.2, np.where(age < 30, 0.1, 0.0))
    occ_p[:, 7] += np.where(age >= 60, 1.5, np.where(age >= 55, 0.2, 0.0))
    occupation = _choice_rows(rng, occ_p)

    city = region * len(CITY_P) + city_in_region
    city_names = [c for group in CITIES for c in group]
    first_tier = np.array([name in FIRST_TIER for name in city_names])[city]

    m_rate = (
        np.asarray(REGION_RATE)[region]
        * np.asarray(CHANNEL_RATE)[channel]
        * (0.75 + 0.5 * np.exp(-(((age - 35.0) / 15.0) ** 2)))
    )
    m_spend = (
        np.asarray(REGION_SPEND)[region]
        * np.asarray(OCCUPATION_SPEND)[occupation]
        * np.where(first_tier, 1.2, 1.0)
        * (0.75 + 0.5 * np.clip((age - 18.0) / 40.0, 0.0, 1.0))
    )
    m_churn = np.asarray(CHANNEL_CHURN)[channel] * np.where(age < 25, 1.2, 1.0)

    p_never = np.clip(config.never_buy_share * np.asarray(CHANNEL_NEVER_BUY)[channel], 0, 0.95)
    never = rng.random(n) < p_never
    lam = rng.gamma(
        config.purchase_rate_shape, config.purchase_rate_mean / config.purchase_rate_shape, n
    )
    lam = np.minimum(lam * m_rate, config.purchase_rate_max)
    lam[never] = 0.0
    nu = rng.gamma(config.spend_q, 1.0 / config.spend_gamma, n)
    spend_mean = config.spend_shape / nu * m_spend
    mu = (
        rng.gamma(
            config.leave_hazard_shape, config.leave_hazard_mean / config.leave_hazard_shape, n
        )
        * m_churn
    )
    refund_prob = _beta_mean(rng, config.refund_prob_mean, 20.0, n)
    complaint_prob = _beta_mean(rng, config.complaint_prob_mean, 30.0, n)
    complaint_if_refund = np.minimum(complaint_prob * config.complaint_after_refund_factor, 1.0)
    leave_prob = (
        refund_prob
        * (
            complaint_if_refund * config.leave_after_complaint
            + (1 - complaint_if_refund) * config.leave_after_refund
        )
        + (1 - refund_prob) * complaint_prob * config.leave_after_complaint
    )
    leave_prob[never] = 0.0

    # Browsing and logins correlate with buying; never-buyers browse less.
    rel = np.where(never, 1.0, (lam / config.purchase_rate_mean) ** 0.4)
    browse_base = np.where(never, config.browse_rate_never_buyer, config.browse_rate_mean)
    browse_rate = browse_base * rng.gamma(2.0, 0.5, n) * rel
    login_rate = config.login_rate_mean * rng.gamma(2.0, 0.5, n) * rel

    # Preferred category (gender-tilted), and the mean price factor it implies.
    tilt = np.asarray(CATEGORY_GENDER_TILT).T[gender] * np.asarray(CATEGORY_P)
    favourite = _choice_rows(rng, tilt)
    base_p = np.asarray(CATEGORY_P) / np.sum(CATEGORY_P)
    price = np.asarray(CATEGORY_PRICE)
    share = config.favourite_category_share
    price_norm = share * price[favourite] + (1 - share) * float(base_p @ price)

    leave_at = signup + rng.exponential(1.0, n) / mu
    leaving_days = rng.exponential(config.leaving_days_mean, n)
    return {
        "signup": signup,
        "gender": gender,
        "birth_year": np.floor(_year_fraction(clock.origin) - age).astype(np.int64),
        "region": region,
        "city": city,
        "channel": channel,
        "occupation": occupation,
        "never": never,
        "lam": lam,
        "spend_mean": spend_mean,
        "mu": mu,
        "refund_prob": refund_prob,
        "complaint_prob": complaint_prob,
        "complaint_if_refund": complaint_if_refund,
        "leave_prob": leave_prob,
        "browse_rate": browse_rate,
        "login_rate": login_rate,
        "favourite": favourite,
        "price_norm": price_norm,
        "leave_at": leave_at,
        "leaving_days": leaving_days,
        "age": age,
        "rate_multiplier": m_rate,
        "spend_multiplier": m_spend,
        "churn_multiplier": m_churn,
    }


def _year_fraction(ts: pd.Timestamp) -> float:
    return ts.year + (ts.day_of_year - 1) / 365.25


def _beta_mean(rng: np.random.Generator, mean: float, strength: float, n: int) -> np.ndarray:
    if mean <= 0:
        return np.zeros(n)
    return rng.beta(mean * strength, (1 - mean) * strength, n)


def _simulate_purchases(
    rng: np.random.Generator,
    cust: dict[str, np.ndarray],
    clock: _Clock,
    t_end: float,
    config: SyntheticConfig,
) -> dict[str, np.ndarray]:
    """Purchases of every buyer, one round per purchase number, all buyers at once.

    Each round draws every still-buying customer's next purchase in operational time. An
    active customer whose leave time comes first switches to *leaving* (restarting the
    memoryless clock at the slower rate); one past their dropout or the end stops. A
    purchase may be refunded or complained about, which can start the leaving state at
    the purchase; later refunds or complaints can only move it earlier, and only from
    times after the purchase, so purchases already accepted stay valid.
    """
    leave_at = cust["leave_at"]  # updated in place when a bad purchase starts leaving
    lam, leaving_days = cust["lam"], cust["leaving_days"]
    idx = np.flatnonzero(~cust["never"])
    u = clock.op(cust["signup"][idx])
    leaving = np.zeros(idx.size, dtype=bool)
    phi = config.leaving_purchase_factor
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "t", "refund", "complaint", "coin")}
    while idx.size:
        rate = lam[idx] * np.where(leaving, phi, 1.0)
        with np.errstate(divide="ignore"):
            u_next = u + rng.exponential(1.0, idx.size) / rate
        t_next = clock.inv(u_next)
        t_leave = leave_at[idx]
        switch = ~leaving & (t_next >= t_leave) & (t_leave < t_end)
        stop = ~switch & ((t_next >= t_end) | (t_next >= t_leave + leaving_days[idx]))
        buy = ~switch & ~stop
        who = idx[buy]
        refund = rng.random(who.size) < cust["refund_prob"][who]
        p_complaint = np.where(
            refund, cust["complaint_if_refund"][who], cust["complaint_prob"][who]
        )
        complaint = rng.random(who.size) < p_complaint
        p_leave = np.where(
            complaint,
            config.leave_after_complaint,
            np.where(refund, config.leave_after_refund, 0.0),
        )
        # The coin is drawn for every purchase; it only matters while still active.
        coin = rng.random(who.size) < p_leave
        starts_leaving = ~leaving[buy] & coin
        leave_at[who[starts_leaving]] = t_next[buy][starts_leaving]
        out["cust"].append(who)
        out["t"].append(t_next[buy])
        out["refund"].append(refund)
        out["complaint"].append(complaint)
        out["coin"].append(coin)

        u = np.where(switch, clock.op(t_leave), u_next)
        new_leaving = leaving | switch
        new_leaving[buy] |= starts_leaving
        keep = ~stop
        idx, u, leaving = idx[keep], u[keep], new_leaving[keep]
    return {k: np.concatenate(v) if v else np.empty(0) for k, v in out.items()}


def _order_events(
    rng: np.random.Generator,
    cust: dict[str, np.ndarray],
    purchases: dict[str, np.ndarray],
    t_end: float,
    config: SyntheticConfig,
    trace: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Purchases with their details, and the refunds, complaints and browses they cause.

    ``trace``, when given, receives what the events alone do not show: each order's price
    factor, and the drawn refund and complaint times and amounts, including those that
    never became events because the customer had dropped out first.
    """
    who = purchases["cust"].astype(np.int64)
    t = purchases["t"]
    n = who.size
    dropout = cust["leave_at"] + cust["leaving_days"]
    order = np.arange(n, dtype=np.int64)

    base_p = np.asarray(CATEGORY_P) / np.sum(CATEGORY_P)
    category = np.where(
        rng.random(n) < config.favourite_category_share,
        cust["favourite"][who],
        _choice(rng, n, base_p),
    )
    product = category * PRODUCTS_PER_CATEGORY + _zipf_index(rng, n)
    factor = np.asarray(CATEGORY_PRICE)[category] / cust["price_norm"][who]
    amount = rng.gamma(config.spend_shape, cust["spend_mean"][who] / config.spend_shape) * factor
    amount = np.maximum(np.round(amount, 2), 0.5)
    many = (category == CATEGORIES.index("grocery")) | (category == CATEGORIES.index("books"))
    quantity = (1 + rng.poisson(np.where(many, 1.5, 0.3))).astype(np.float64)
    parts = [
        {
            "cust": who,
            "t": t,
            "type": _PURCHASE,
            "amount": amount,
            "category": category,
            "product": product,
            "order": order,
            "quantity": quantity,
        }
    ]

    # Refunds: 1 hour to ~2 weeks later, whole or a share of the amount.
    r = np.flatnonzero(purchases["refund"])
    t_r = t[r] + 1 / 24 + rng.gamma(2.0, 2.5, r.size)
    full = rng.random(r.size) < config.full_refund_share
    share = np.where(full, 1.0, rng.uniform(0.1, 0.9, r.size))
    r_amount = np.minimum(np.round(amount[r] * share, 2), amount[r])
    if trace is not None:
        trace.update(price_factor=factor, refund_order=r, refund_t=t_r, refund_amount=r_amount)
    ok = (t_r < t_end) & (t_r < dropout[who[r]])
    r = r[ok]
    parts.append(
        {
            "cust": who[r],
            "t": t_r[ok],
            "type": _REFUND,
            "amount": r_amount[ok],
            "category": category[r],
            "product": product[r],
            "order": order[r],
            "quantity": np.where(full[ok], quantity[r], np.nan),
        }
    )

    # Complaints: hours to days after the purchase, about that order.
    c = np.flatnonzero(purchases["complaint"])
    t_c = t[c] + 1 / 24 + rng.gamma(1.5, 2.0, c.size)
    if trace is not None:
        trace.update(complaint_order=c, complaint_t=t_c)
    ok = (t_c < t_end) & (t_c < dropout[who[c]])
    c = c[ok]
    parts.append(
        {
            "cust": who[c],
            "t": t_c[ok],
            "type": _COMPLAINT,
            "category": category[c],
            "order": order[c],
        }
    )

    # Browses leading to each purchase: same product, within hours before it.
    k = rng.poisson(config.browses_per_purchase, n)
    b = np.repeat(np.arange(n), k)
    t_b = t[b] - rng.exponential(0.25, b.size)
    ok = t_b >= cust["signup"][who[b]]
    b = b[ok]
    parts.append(
        {
            "cust": who[b],
            "t": t_b[ok],
            "type": _BROWSE,
            "category": category[b],
            "product": product[b],
        }
    )
    return parts


def _zipf_index(rng: np.random.Generator, n: int) -> np.ndarray:
    # Popularity falls steeply with rank: a few best sellers, a long tail.
    return np.floor(PRODUCTS_PER_CATEGORY * rng.random(n) ** 3).astype(np.int64)


def _activity_events(
    rng: np.random.Generator,
    cust: dict[str, np.ndarray],
    clock: _Clock,
    t_end: float,
    config: SyntheticConfig,
) -> list[dict[str, Any]]:
    """Background browses and logins: steady while active, fading while leaving."""
    signup = cust["signup"]
    n = signup.size
    leave = np.minimum(cust["leave_at"], t_end)
    stop = np.minimum(cust["leave_at"] + cust["leaving_days"], t_end)
    op_signup, op_leave, op_stop = clock.op(signup), clock.op(leave), clock.op(stop)
    parts: list[dict[str, Any]] = [
        {"cust": np.arange(n, dtype=np.int64), "t": signup, "type": _LOGIN}
    ]
    for kind, rate in ((_BROWSE, cust["browse_rate"]), (_LOGIN, cust["login_rate"])):
        # Active period: homogeneous in operational time.
        count = rng.poisson(rate * (op_leave - op_signup))
        who = np.repeat(np.arange(n, dtype=np.int64), count)
        u = op_signup[who] + rng.random(who.size) * (op_leave - op_signup)[who]
        t_active = clock.inv(u)
        # Leaving period: thinning by the fade factor.
        count = rng.poisson(rate * np.maximum(op_stop - op_leave, 0.0))
        who2 = np.repeat(np.arange(n, dtype=np.int64), count)
        u2 = op_leave[who2] + rng.random(who2.size) * (op_stop - op_leave)[who2]
        t_leaving = clock.inv(u2)
        kept = rng.random(who2.size) < np.exp(-(t_leaving - leave[who2]) / config.fade_days)
        who_all = np.concatenate([who, who2[kept]])
        t_all = np.concatenate([t_active, t_leaving[kept]])
        inside = t_all < t_end  # guards float rounding at the very end of the grid
        who_all, t_all = who_all[inside], t_all[inside]
        t_all = np.maximum(t_all, signup[who_all])
        part: dict[str, Any] = {"cust": who_all, "t": t_all, "type": kind}
        if kind == _BROWSE:
            category = np.where(
                rng.random(who_all.size) < config.favourite_category_share * 0.8,
                cust["favourite"][who_all],
                _choice(rng, who_all.size, CATEGORY_P),
            )
            part["category"] = category
            part["product"] = category * PRODUCTS_PER_CATEGORY + _zipf_index(rng, who_all.size)
        parts.append(part)
    return parts


def _assemble_events(
    parts: list[dict[str, Any]], origin: pd.Timestamp, n_customers: int, t_end: float
) -> pd.DataFrame:
    """Concatenate the event parts, sort them by time and build the canonical frame.

    Parts are consumed (their arrays dropped as soon as they are gathered) to keep the
    peak memory near the size of the finished frame.
    """
    sizes = [p["cust"].size for p in parts]
    total = int(sum(sizes))

    def column(key: str, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full(total, fill, dtype=dtype)
        pos = 0
        for part, size in zip(parts, sizes, strict=True):
            if key in part:
                out[pos : pos + size] = part.pop(key)
            pos += size
        return out

    # Whole seconds: t < dropout stays strictly before the (ceiled) dropout timestamp.
    seconds = np.floor(column("t", 0.0, np.float64) * 86_400).astype(np.int64)
    cust = column("cust", 0, np.int32)
    etype = column("type", 0, np.int8)
    product = column("product", -1, np.int32)
    drop = _duplicate_rows(seconds, cust, etype, product)
    keep = total - drop.size
    # Sort by time, ties in generation order: pack (seconds, row) into one unique int64
    # and sort the values (a SIMD sort, several times faster than a stable argsort).
    # Dropped duplicates get a time past the end, so they sort last and are cut off.
    seconds[drop] = int(t_end * 86_400) + 1
    row_bits = max(1, total.bit_length())
    if (int(t_end * 86_400) + 1).bit_length() + row_bits <= 62:
        packed = (seconds << row_bits) | np.arange(total, dtype=np.int64)
        packed.sort()
        packed = packed[:keep]
        order = packed & ((1 << row_bits) - 1)
        seconds = packed >> row_bits
        del packed
    else:  # decades of data with billions of rows: fall back to the stable argsort
        order = np.argsort(seconds, kind="stable")[:keep]
        seconds = seconds[order]
    origin_us = origin.value // 1000
    occurred_at = _timestamps(origin_us + seconds * 1_000_000)
    del seconds

    customer_id = _customer_ids(cust[order], n_customers)
    event_type = _strings(_TYPES, etype[order])
    product_id = _product_ids(product[order])
    del cust, etype, product
    category = column("category", -1, np.int8)[order]
    category_s = _strings(CATEGORIES, np.maximum(category, 0), category >= 0)
    del category
    order_id = _order_ids(column("order", -1, np.int64)[order])
    frame = pd.DataFrame(
        {
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "event_type": event_type,
            "amount": column("amount", np.nan, np.float64)[order],
            "category": category_s,
            "product_id": product_id,
            "order_id": order_id,
            "quantity": column("quantity", np.nan, np.float64)[order],
        },
        copy=False,
    )
    return frame


def _duplicate_rows(
    seconds: np.ndarray, cust: np.ndarray, etype: np.ndarray, product: np.ndarray
) -> np.ndarray:
    """Rows repeating an earlier browse or login exactly (same second, customer, product).

    Two Poisson events of one customer can land in the same second; as rows they would be
    indistinguishable, and importers rightly reject exact duplicates. Dropping the repeats
    thins the process by a negligible amount (about 1e-5 of browses).
    """
    sel = np.flatnonzero((etype == _BROWSE) | (etype == _LOGIN))
    cust_bits = max(1, int(cust.max(initial=0)).bit_length())
    product_bits = (PRODUCTS_PER_CATEGORY * len(CATEGORIES) + 1).bit_length()
    time_bits = int(seconds.max(initial=0)).bit_length()
    if time_bits + cust_bits + product_bits <= 63:
        key = (
            (seconds[sel] << (cust_bits + product_bits))
            | (cust[sel].astype(np.int64) << product_bits)
            | (product[sel].astype(np.int64) + 1)
        )
    else:  # very many customers over a long period: a slower but exact key
        triples = np.stack([seconds[sel], cust[sel], product[sel]], axis=1)
        _, key = np.unique(triples, axis=0, return_inverse=True)
        key = key.ravel().astype(np.int64)
    ordered = np.sort(key)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if repeated.size == 0:
        return np.empty(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(repeated, key), repeated.size - 1)
    involved = np.flatnonzero(repeated[at] == key)
    # Keep the first row of each repeated key, drop the others.
    _, first = np.unique(key[involved], return_index=True)
    return sel[np.delete(involved, first)]


def _customer_id_bytes(n: int) -> np.ndarray:
    return _id_bytes("C", np.arange(1, n + 1, dtype=np.int64), max(7, len(str(n))))


def _customer_ids(codes: np.ndarray, n_customers: int) -> pd.Series:
    return _gather_strings(_customer_id_bytes(n_customers), codes)


def _product_ids(product: np.ndarray) -> pd.Series:
    """``ELE-00042``: three letters of the category, then the product's rank."""
    numbers = np.tile(np.arange(1, PRODUCTS_PER_CATEGORY + 1), len(CATEGORIES))
    table = _id_bytes("-", numbers, 5)
    heads = np.array([list(c[:3].upper().encode("ascii")) for c in CATEGORIES], dtype=np.uint8)
    table = np.concatenate([heads.repeat(PRODUCTS_PER_CATEGORY, axis=0), table], axis=1)
    valid = product >= 0
    return _gather_strings(table, np.maximum(product, 0), valid)


def _order_ids(order_no: np.ndarray) -> pd.Series:
    valid = order_no >= 0
    return _fixed_strings(_id_bytes("O", order_no[valid] + 1, 9), order_no.size, valid)


def _customers_frame(cust: dict[str, np.ndarray], origin: pd.Timestamp, n: int) -> pd.DataFrame:
    origin_us = origin.value // 1000
    signup_us = origin_us + np.floor(cust["signup"] * 86_400).astype(np.int64) * 1_000_000
    city_names = tuple(c for group in CITIES for c in group)
    return pd.DataFrame(
        {
            "customer_id": _customer_ids(np.arange(n), n),
            "signup_at": _timestamps(signup_us),
            "gender": _strings(GENDERS, cust["gender"]),
            "birth_year": pd.array(cust["birth_year"], dtype="Int64"),
            "region": _strings(REGIONS, cust["region"]),
            "city": _strings(city_names, cust["city"]),
            "channel": _strings(CHANNELS, cust["channel"]),
            "occupation": _strings(OCCUPATIONS, cust["occupation"]),
        }
    )


def _truth_frame(
    cust: dict[str, np.ndarray], origin: pd.Timestamp, t_end: float, config: SyntheticConfig
) -> pd.DataFrame:
    origin_us = origin.value // 1000

    def stamp(t: np.ndarray, ceil: bool) -> pd.Series:
        reached = t < t_end
        sec = np.ceil(t * 86_400) if ceil else np.floor(t * 86_400)
        us = origin_us + np.where(reached, sec, 0).astype(np.int64) * 1_000_000
        return _timestamps(us).where(pd.Series(reached), pd.NaT)

    leaving_at = cust["leave_at"]
    dropout_at = leaving_at + cust["leaving_days"]
    never = cust["never"]
    refund_share = config.full_refund_share + (1 - config.full_refund_share) * 0.5
    frame = pd.DataFrame(
        {
            "customer_id": _customer_ids(np.arange(never.size), never.size),
            "signup_at": _timestamps(
                origin_us + np.floor(cust["signup"] * 86_400).astype(np.int64) * 1_000_000
            ),
            "never_buys": never,
            "purchase_rate": cust["lam"],
            "spend_mean": np.where(never, 0.0, cust["spend_mean"]),
            "leave_hazard": cust["mu"],
            "leave_prob_per_purchase": cust["leave_prob"],
            "leaving_exit_hazard": np.full(never.size, 1.0 / config.leaving_days_mean),
            "leaving_purchase_factor": np.full(never.size, config.leaving_purchase_factor),
            "expected_refund_share": cust["refund_prob"] * refund_share,
            "browse_rate": cust["browse_rate"],
            "login_rate": cust["login_rate"],
            "leaving_at": stamp(leaving_at, ceil=False),
            "dropout_at": stamp(dropout_at, ceil=True),
        }
    )
    frame.attrs["synthetic_config"] = config.model_dump(mode="json")
    return frame


# ---------------------------------------------------------------- oracles


def _oracle_inputs(
    truth: pd.DataFrame, cutoff: DateLike, horizon_days: int, config: SyntheticConfig | None
) -> tuple[pd.DataFrame, np.ndarray, SyntheticConfig]:
    if (
        isinstance(horizon_days, bool)
        or not isinstance(horizon_days, int)
        or not (1 <= horizon_days <= 3650)
    ):
        raise FeaturesError(
            f"horizon_days must be an int in [1, 3650]. Got {horizon_days!r} instead."
        )
    required = [
        "customer_id",
        "signup_at",
        "never_buys",
        "purchase_rate",
        "spend_mean",
        "leave_hazard",
        "leave_prob_per_purchase",
        "leaving_exit_hazard",
        "leaving_purchase_factor",
        "expected_refund_share",
        "leaving_at",
        "dropout_at",
    ]
    missing = [c for c in required if c not in truth.columns]
    if missing:
        raise FeaturesError(f"The truth table must have columns {required}. Missing {missing}.")
    if config is None:
        stored = truth.attrs.get("synthetic_config")
        config = SyntheticConfig.model_validate(stored) if stored else SyntheticConfig()
    c = _utc(cutoff, "cutoff")
    rows = truth.loc[_as_utc(truth["signup_at"]) < c]
    hours = pd.date_range(c, periods=horizon_days * 24, freq="h")
    daily = seasonality(hours, config).reshape(horizon_days, 24).mean(axis=1)
    return rows, daily, config


def _as_utc(values: pd.Series) -> pd.Series:
    # The truth may come from a CSV file (ISO strings) or from memory (timestamps).
    return pd.to_datetime(values, utc=True)


def _state_at(rows: pd.DataFrame, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    leaving_at = _as_utc(rows["leaving_at"])
    dropout_at = _as_utc(rows["dropout_at"])
    dropped = (dropout_at <= cutoff).fillna(False).to_numpy(dtype=bool)
    leaving = (leaving_at <= cutoff).fillna(False).to_numpy(dtype=bool) & ~dropped
    return dropped, leaving


def _g(x: np.ndarray) -> np.ndarray:
    """(1 - exp(-x)) / x, continuous at 0."""
    safe = np.where(np.abs(x) < 1e-12, 1.0, x)
    return np.where(np.abs(x) < 1e-12, 1.0 - x / 2, -np.expm1(-safe) / safe)


def _two_state_day(
    a0: np.ndarray, b0: np.ndarray, a: np.ndarray, m: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One day of A' = -a A, B' = m A - b B: end values and integrals of A and B."""
    ea, eb = np.exp(-a), np.exp(-b)
    d = b - a
    small = np.abs(d) < 1e-7
    d_safe = np.where(small, 1.0, d)
    # (e^-a - e^-b) / (b - a) and (g(a) - g(b)) / (b - a), with their limits at b == a.
    cross = np.where(small, ea, ea * _g(d_safe))
    ga, gb = _g(a), _g(b)
    # The limit -g'(a) = (1 - e^-a (1 + a)) / a^2, by its series where that cancels.
    a_safe = np.where(a < 1e-3, 1.0, a)
    limit = np.where(a < 1e-3, 0.5 - a / 3 + a * a / 8, (1 - ea * (1 + a)) / (a_safe * a_safe))
    int_cross = np.where(small, limit, (ga - gb) / d_safe)
    a1 = a0 * ea
    b1 = b0 * eb + m * a0 * cross
    int_a = a0 * ga
    int_b = b0 * gb + m * a0 * int_cross
    return a1, b1, int_a, int_b


def horizon_no_purchase(
    a_mass: np.ndarray,
    b_mass: np.ndarray,
    *,
    lam: np.ndarray,
    mu: np.ndarray,
    nu: Any,
    phi: Any,
    daily: np.ndarray,
) -> np.ndarray:
    """P(no purchase over the horizon) from state masses A (active) and B (leaving).

    Purchases end the no-purchase mass, so a bad purchase's leave trigger never matters
    here; D = nu * integral of B is the mass that drops out without buying.
    """
    gone = np.zeros(np.broadcast(a_mass, lam).shape)
    for s in daily:
        a_mass, b_mass_next, _int_a, int_b = _two_state_day(
            a_mass, b_mass, mu + lam * s, mu, nu + phi * lam * s
        )
        gone = gone + nu * int_b
        b_mass = b_mass_next
    return np.clip(a_mass + b_mass + gone, 0.0, 1.0)


def horizon_purchases(
    a_mass: np.ndarray,
    b_mass: np.ndarray,
    *,
    lam: np.ndarray,
    mu: np.ndarray,
    q: np.ndarray,
    nu: Any,
    phi: Any,
    daily: np.ndarray,
) -> np.ndarray:
    """Expected purchases over the horizon from state masses A (active) and B (leaving).

    Active customers start leaving at ``mu`` plus ``q`` per purchase; leaving ones buy at
    ``phi`` times the rate and drop out at ``nu``.
    """
    purchases = np.zeros(np.broadcast(a_mass, lam).shape)
    nu_arr = np.broadcast_to(np.asarray(nu, dtype=np.float64), purchases.shape)
    for s in daily:
        into_leaving = mu + q * lam * s
        a_mass, b_mass, int_a, int_b = _two_state_day(
            a_mass, b_mass, into_leaving, into_leaving, nu_arr
        )
        purchases = purchases + lam * s * (int_a + phi * int_b)
    return purchases


@dataclass(frozen=True)
class _OracleStart:
    """Customers in scope at a cutoff, their latent state there and their hazards."""

    rows: pd.DataFrame
    daily: np.ndarray  # mean seasonality factor of each horizon day
    dropped: np.ndarray
    a_mass: np.ndarray  # probability of being active (no dropout started)
    b_mass: np.ndarray  # probability of being in the leaving state
    lam: np.ndarray
    mu: np.ndarray
    q: np.ndarray
    nu: np.ndarray
    phi: np.ndarray


def _oracle_start(
    truth: pd.DataFrame, cutoff: DateLike, horizon_days: int, config: SyntheticConfig | None
) -> _OracleStart:
    rows, daily, _config = _oracle_inputs(truth, cutoff, horizon_days, config)
    dropped, leaving = _state_at(rows, _utc(cutoff, "cutoff"))

    def col(name: str) -> np.ndarray:
        return rows[name].to_numpy(dtype=np.float64)

    return _OracleStart(
        rows=rows,
        daily=daily,
        dropped=dropped,
        a_mass=np.where(leaving | dropped, 0.0, 1.0),
        b_mass=np.where(leaving, 1.0, 0.0),
        lam=col("purchase_rate"),
        mu=col("leave_hazard"),
        q=col("leave_prob_per_purchase"),
        nu=col("leaving_exit_hazard"),
        phi=col("leaving_purchase_factor"),
    )


def oracle_churn_probability(
    truth: pd.DataFrame,
    *,
    cutoff: DateLike,
    horizon_days: int,
    config: SyntheticConfig | None = None,
) -> pd.Series:
    """P(no purchase in (cutoff, cutoff + horizon]) given each customer's latent state.

    The state at the cutoff is read from the truth (active, leaving since ``leaving_at``,
    or dropped out: probability 1); never-buyers have probability 1. The future is the
    generator's Markov chain, solved exactly day by day (daily-mean seasonality).

    Args:
        truth: The ``truth`` frame of :func:`generate` (or the written truth file).
        cutoff: The as-of instant; customers who signed up at or after it are left out.
            The state is exact for cutoffs up to the generated ``end`` (the truth does
            not know what happened later).
        horizon_days: Length of the horizon in days.
        config: The generator's config; default: the one stored in ``truth.attrs`` when
            present, else :class:`SyntheticConfig` defaults.

    Returns:
        Float Series indexed by ``customer_id`` (customers with ``signup_at < cutoff``).
    """
    st = _oracle_start(truth, cutoff, horizon_days, config)
    rows, daily, dropped = st.rows, st.daily, st.dropped
    lam, mu, nu, phi = st.lam, st.mu, st.nu, st.phi
    p = horizon_no_purchase(st.a_mass, st.b_mass, lam=lam, mu=mu, nu=nu, phi=phi, daily=daily)
    p = np.where(dropped | rows["never_buys"].to_numpy(dtype=bool) | (lam <= 0), 1.0, p)
    return pd.Series(
        p, index=pd.Index(rows["customer_id"], name="customer_id"), name="p_no_purchase"
    )


def oracle_expected_value(
    truth: pd.DataFrame,
    *,
    cutoff: DateLike,
    horizon_days: int,
    config: SyntheticConfig | None = None,
) -> pd.Series:
    """Expected net spend (purchases minus refunds) in (cutoff, cutoff + horizon].

    Expected purchases come from the same Markov chain as
    :func:`oracle_churn_probability`, including bad purchases that start the leaving
    state; each is worth ``spend_mean * (1 - expected_refund_share)`` (refunds are
    counted against the order they refund, whose refund follows within days).

    Returns:
        Float Series indexed by ``customer_id`` (customers with ``signup_at < cutoff``).
    """
    st = _oracle_start(truth, cutoff, horizon_days, config)
    rows, daily, dropped = st.rows, st.daily, st.dropped
    lam, mu, q, nu, phi = st.lam, st.mu, st.q, st.nu, st.phi
    purchases = horizon_purchases(
        st.a_mass, st.b_mass, lam=lam, mu=mu, q=q, nu=nu, phi=phi, daily=daily
    )
    value = (
        purchases
        * rows["spend_mean"].to_numpy(dtype=np.float64)
        * (1.0 - rows["expected_refund_share"].to_numpy(dtype=np.float64))
    )
    value = np.where(dropped | rows["never_buys"].to_numpy(dtype=bool), 0.0, value)
    return pd.Series(
        value, index=pd.Index(rows["customer_id"], name="customer_id"), name="expected_net_spend"
    )


# ---------------------------------------------------------------- files


def write_synthetic(
    data: SyntheticData, out_dir: Path, *, file_format: Literal["csv", "parquet"] = "csv"
) -> dict[str, Path]:
    """Write customers, events and truth to ``out_dir`` (atomically, file by file).

    CSV timestamps are ISO 8601 in UTC with a ``Z`` suffix, nulls are empty fields;
    output bytes depend only on the data, so the same seed writes identical files.

    Returns:
        The written paths by name (``customers``, ``events``, ``truth``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in (
        ("customers", data.customers),
        ("events", data.events),
        ("truth", data.truth),
    ):
        path = out_dir / f"{name}.{file_format}"
        table = _arrow_table(frame)
        # A sibling temp file (default permissions, unlike mkstemp's 0600), then replace.
        tmp = out_dir / f".{name}.{file_format}.{os.getpid()}.tmp"
        try:
            if file_format == "csv":
                pa_csv.write_csv(
                    _csv_ready(table),
                    str(tmp),
                    pa_csv.WriteOptions(quoting_style="needed", batch_size=65_536),
                )
            else:
                pq.write_table(table, str(tmp), compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths[name] = path
    return paths


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table without pandas metadata (zero-copy for Arrow strings)."""
    columns = []
    for name in frame.columns:
        values = frame[name]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
            columns.append(pa.array(naive, type=pa.timestamp("us", tz="UTC")))
        elif values.dtype == bool:
            columns.append(pa.array(values.to_numpy()))
        else:
            columns.append(pa.array(values.array))
    return pa.table(columns, names=[str(c) for c in frame.columns])


def _csv_ready(table: pa.Table) -> pa.Table:
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        columns.append(_iso_seconds(column) if pa.types.is_timestamp(field.type) else column)
    return pa.table(columns, names=table.column_names)


def _iso_seconds(column: pa.ChunkedArray) -> pa.Array:
    """UTC timestamps as ``2024-01-31T12:34:56Z`` (whole seconds; nulls stay null).

    Built from two small dictionaries (dates in range, times of day) gathered by index:
    about 20x faster than ``strftime`` on tens of millions of rows.
    """
    us = pc.cast(column, pa.timestamp("us", tz="UTC")).combine_chunks()
    valid = us.is_valid().to_numpy(zero_copy_only=False)
    raw = us.cast(pa.int64()).fill_null(0).to_numpy()
    seconds = np.floor_divide(raw, 1_000_000)
    day = np.floor_divide(seconds, 86_400)
    time_of_day = seconds - day * 86_400
    first = int(day[valid].min()) if valid.any() else 0
    last = int(day[valid].max()) if valid.any() else 0
    dates = np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"))
    date_text = pc.take(pa.array(dates.tolist()), pa.array(day - first, mask=~valid))
    time_text = pc.take(_times_of_day(), pa.array(time_of_day, mask=~valid))
    return pc.binary_join_element_wise(date_text, time_text, "T")


_TIMES_OF_DAY: list[pa.Array] = []


def _times_of_day() -> pa.Array:
    """The 86,400 strings ``HH:MM:SSZ`` (built once)."""
    if not _TIMES_OF_DAY:
        text = np.datetime_as_string(np.arange(86_400).astype("datetime64[s]"))
        _TIMES_OF_DAY.append(pa.array([t[11:] + "Z" for t in text.tolist()]))
    return _TIMES_OF_DAY[0]
