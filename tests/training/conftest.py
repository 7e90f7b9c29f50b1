"""Small hand-made facts and a minimal feature builder for training tests.

The simulator draws customers from a buy-till-you-die process (so churn and value are
learnable) in canonical frames; the feature builder honours the ``build_features``
contract (one row per customer with signup before each as-of date, events strictly
before it) with a handful of core features, so training tests do not depend on the
full feature catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from features.schema import customers_frame, events_frame
from tests.training.registry_fixtures import (
    churn_window,
    registry,
    registry_template,
    store,
    value_window,
)

__all__ = [
    "churn_window",
    "facts",
    "registry",
    "registry_template",
    "simulate_facts",
    "store",
    "tiny_build_features",
    "value_window",
]


def simulate_facts(
    n: int = 1500, *, seed: int = 0, start: str = "2022-01-01", end: str = "2024-06-30"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers and purchase/refund/browse events from a buy-till-you-die process."""
    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    days = (t1 - t0).days
    signup = rng.uniform(0, days * 0.6, n)
    rate = rng.gamma(1.2, 1 / 40.0, n)  # purchases per day while alive
    life = rng.exponential(rng.choice([120.0, 2000.0], n, p=[0.5, 0.5]))
    spend = rng.gamma(3.0, 20.0, n)
    region = rng.choice(["north", "south", "east"], n)
    rows: list[dict[str, object]] = []
    for i in range(n):
        stop = min(days, signup[i] + life[i])
        t = signup[i]
        while True:
            t += rng.exponential(1 / rate[i])
            if t >= stop:
                break
            at = t0 + pd.Timedelta(days=float(t))
            amount = float(rng.gamma(4.0, spend[i] / 4.0))
            rows.append(
                {
                    "customer_id": f"c{i:05d}",
                    "occurred_at": at,
                    "event_type": "purchase",
                    "amount": round(amount, 2),
                }
            )
            if rng.random() < 0.05:
                rows.append(
                    {
                        "customer_id": f"c{i:05d}",
                        "occurred_at": at + pd.Timedelta(days=3),
                        "event_type": "refund",
                        "amount": round(amount, 2),
                    }
                )
            if rng.random() < 0.5:
                rows.append(
                    {
                        "customer_id": f"c{i:05d}",
                        "occurred_at": at - pd.Timedelta(hours=2),
                        "event_type": "browse",
                    }
                )
    events = events_frame(rows)
    events = events.loc[events["occurred_at"] < t1].reset_index(drop=True)
    customers = customers_frame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "signup_at": [t0 + pd.Timedelta(days=float(s)) for s in signup],
            "region": region,
        }
    )
    return customers, events


def tiny_build_features(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp | Sequence[pd.Timestamp],
    spec: object = None,
) -> pd.DataFrame:
    """A few core features with the ``build_features`` contract's names and rows."""
    many = not isinstance(as_of, (pd.Timestamp, str))
    stamps = [pd.Timestamp(a) for a in (as_of if many else [as_of])]  # type: ignore[union-attr]
    frames = []
    for ts in stamps:
        pop = customers.loc[customers["signup_at"] < ts, ["customer_id", "signup_at", "region"]]
        ev = events.loc[events["occurred_at"] < ts]
        pur = ev.loc[ev["event_type"] == "purchase"].groupby("customer_id")
        agg = pd.DataFrame(
            {
                "last": pur["occurred_at"].max(),
                "frequency_orders": pur.size(),
                "monetary_total": pur["amount"].sum(),
            }
        )
        recent = ev.loc[
            (ev["event_type"] == "purchase") & (ev["occurred_at"] >= ts - pd.Timedelta(days=90))
        ]
        agg90 = recent.groupby("customer_id").size().rename("purchase_count_90d")
        out = pop.merge(agg, left_on="customer_id", right_index=True, how="left")
        out = out.merge(agg90, left_on="customer_id", right_index=True, how="left")
        out["recency_days"] = (ts - out["last"]).dt.total_seconds() / 86400
        out["never_purchased"] = out["frequency_orders"].isna()
        out["frequency_orders"] = out["frequency_orders"].fillna(0).astype("int64")
        out["purchase_count_90d"] = out["purchase_count_90d"].fillna(0).astype("int64")
        out["monetary_total"] = out["monetary_total"].fillna(0.0)
        out["tenure_days"] = (ts - out["signup_at"]).dt.total_seconds() / 86400
        out["as_of"] = ts
        frames.append(
            out[
                [
                    "customer_id",
                    "as_of",
                    "recency_days",
                    "never_purchased",
                    "frequency_orders",
                    "purchase_count_90d",
                    "monetary_total",
                    "tenure_days",
                    "region",
                ]
            ]
        )
    result = pd.concat(frames, ignore_index=True)
    return result if many else result.drop(columns=["as_of"])


@pytest.fixture(scope="session")
def facts() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated customers and events (1500 customers, 2.5 years)."""
    return simulate_facts()
