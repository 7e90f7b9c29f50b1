"""A purchase-only regime: what a retailer's transaction export looks like.

Real purchase logs (CDNOW, the UCI Online Retail sets) hold one row per purchase with a
customer, a date, a quantity and an amount, and nothing else: no order id, no browse,
login, refund or complaint events, no customer attributes. :func:`purchase_log`
simulates the same business as :func:`synthetic.generate` in a harder regime and
reduces it to such a log:

- **heavy-tailed spend**: per-order spend ``Gamma(2, .)`` around customer means drawn
  from an inverse-Gamma with ``q = 2.2`` (a few customers carry much of the revenue);
- **strong seasonality**: a yearly amplitude of 0.35 with the November and December
  festivals doubled, so a calibration year holds a winter peak the holdout half-year
  (January to June) does not;
- **no refunds or complaints**, every customer a buyer (a purchase log knows no one
  else);
- **dates, not times**, and amounts in cents;
- **same-day repeat purchases**: with probability ``repeat_share`` a purchase is bought
  again the same day for the same amount, as a second, identical row (no order id tells
  the two apart: an importer must keep both);
- customers are derived from the log (``signup_at`` = day of the first purchase), with
  no attribute facts.

The ``truth`` frame is the simulation's; its oracles ignore the repeats (expected spend
is low by the factor ``1 + repeat_share``), so purchase-log benchmarks compare models
with the classic baselines rather than with the oracle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import TIMESTAMP_DTYPE, FactsConfig, check_customers, check_events
from synthetic.generator import DateLike, SyntheticConfig, SyntheticData, generate

__all__ = ["PURCHASE_LOG_CONFIG", "purchase_log"]

PURCHASE_LOG_CONFIG = SyntheticConfig(
    never_buy_share=0.0,
    spend_shape=2.0,
    spend_q=2.2,
    spend_gamma=45.0,
    yearly_amplitude=0.35,
    festival_strength=2.0,
    refund_prob_mean=0.0,
    complaint_prob_mean=0.0,
    leave_after_complaint=0.0,
    leave_after_refund=0.0,
)


def purchase_log(
    n_customers: int,
    *,
    start: DateLike = "2023-01-01",
    end: DateLike = "2024-06-30",
    seed: int,
    repeat_share: float = 0.04,
    config: SyntheticConfig | None = None,
) -> SyntheticData:
    """Simulate a purchase-only log (see the module docstring).

    Args:
        n_customers: Customers registered (all of them buy, most more than once).
        start: First day.
        end: Last day, inclusive (default: 18 months, a year to calibrate on and the
            next six months to score).
        seed: Random seed; the same arguments give identical output.
        repeat_share: Probability that a purchase is repeated the same day at the
            same amount (an identical row).
        config: The generative model (default :data:`PURCHASE_LOG_CONFIG`).

    Returns:
        Customers (``customer_id``, ``signup_at`` = first purchase day, attributes
        missing), purchase events (``customer_id``, ``occurred_at`` at midnight UTC,
        ``event_type`` purchase, ``amount``, ``quantity``; other columns missing) and
        the simulation's truth.
    """
    if not 0.0 <= repeat_share < 1.0:
        raise ValueError(f"repeat_share must be in [0, 1). Got {repeat_share}.")
    data = generate(
        n_customers, start=start, end=end, seed=seed, config=config or PURCHASE_LOG_CONFIG
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 22]))
    ev = data.events
    buys = ev.loc[ev["event_type"] == "purchase"].reset_index(drop=True)
    day = pd.to_datetime(buys["occurred_at"], utc=True).dt.normalize()
    quantity = np.where(buys["quantity"].isna(), 1.0, buys["quantity"].to_numpy(dtype=float))
    log = pd.DataFrame(
        {
            "customer_id": buys["customer_id"].astype("string"),
            "occurred_at": day.astype(TIMESTAMP_DTYPE),
            "event_type": pd.array(["purchase"] * len(buys), dtype="string"),
            "amount": np.round(buys["amount"].to_numpy(dtype=float), 2),
            "category": pd.array([pd.NA] * len(buys), dtype="string"),
            "product_id": pd.array([pd.NA] * len(buys), dtype="string"),
            "order_id": pd.array([pd.NA] * len(buys), dtype="string"),
            "quantity": quantity,
        }
    )
    again = rng.random(len(log)) < repeat_share
    log = pd.concat([log, log.loc[again]], ignore_index=True)
    log = log.sort_values(["occurred_at", "customer_id"], kind="stable", ignore_index=True)
    firsts = log.groupby("customer_id", sort=True)["occurred_at"].min()
    customers = data.customers.iloc[:0].copy()
    customers = pd.concat(
        [
            customers,
            pd.DataFrame(
                {
                    "customer_id": firsts.index.astype("string"),
                    "signup_at": firsts.to_numpy(),
                }
            ),
        ],
        ignore_index=True,
    ).astype(data.customers.dtypes.to_dict())
    check_customers(customers, FactsConfig())
    check_events(log)
    return SyntheticData(customers=customers, events=log, truth=data.truth, config=data.config)
