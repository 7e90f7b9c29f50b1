"""Hostile finding 14-2: huge amounts are refused with a reason code, never wrapped.

Amounts are summed as int64 fixed-point (1e4 units per currency unit). Before the fix
an amount above ~9.2e14 wrapped silently (``monetary_total`` 0 from the CLI and
-922337203685477.6 from ``/score``). Now one bound, :data:`features.schema.MAX_AMOUNT`,
is checked at import (reason ``amount_out_of_range``), at every contract check of an
events table (online requests), and the sums themselves are checked where they form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import FactsConfig, ReasonCode
from features.build import build_features
from features.errors import FeaturesError, SchemaError
from features.schema import MAX_AMOUNT, customers_frame, events_frame
from features.store import FactStore
from tests.features.facts_helpers import DATA, run_import, write

HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"


@pytest.mark.parametrize("amount", ["9.3e14", "1e15", "123456789012345678", "1000000000000.01"])
def test_amount_above_the_bound_is_quarantined(tmp_path: Path, amount: str) -> None:
    events = write(
        tmp_path / "events.csv",
        HEADER
        + "c1,2021-01-03,purchase,25.5,books,p1,o1,1\n"
        + f"c1,2021-01-04,purchase,{amount},books,p1,o2,1\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    assert report.files[-1].quarantined == {ReasonCode.AMOUNT_OUT_OF_RANGE.value: 1}
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["line_number"].tolist() == ["3"]
    assert quarantine["message"].tolist() == [
        f"field 'amount': expected a number <= 1e+12, got '{amount}'"
    ]
    store = FactStore(tmp_path / "facts")
    features = build_features(
        store.load_customers(), store.load_events(), as_of=pd.Timestamp("2021-02-01")
    )
    c1 = features.set_index("customer_id").loc["c1"]
    assert c1["monetary_total"] == pytest.approx(25.5)


def test_amount_at_the_bound_is_kept_exactly(tmp_path: Path) -> None:
    events = write(
        tmp_path / "events.csv",
        HEADER + "c1,2021-01-03,purchase,1000000000000,books,p1,o1,1\n"
        "c1,2021-01-04,purchase,0.25,books,p1,o2,1\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    assert report.events_added == 2
    store = FactStore(tmp_path / "facts")
    features = build_features(
        store.load_customers(), store.load_events(), as_of=pd.Timestamp("2021-02-01")
    )
    total = features.set_index("customer_id").loc["c1", "monetary_total"]
    assert total == MAX_AMOUNT + 0.25


def _one_customer() -> pd.DataFrame:
    return customers_frame([{"customer_id": "c1", "signup_at": "2021-01-01"}], FactsConfig())


def test_online_events_above_the_bound_are_refused() -> None:
    # /score builds its events with events_frame; the contract check refuses them
    # (a 400 naming the column), where the wrapped sum used to be served.
    with pytest.raises(SchemaError, match="'amount' of events must be <= 1e\\+12"):
        events_frame(
            [
                {
                    "customer_id": "c1",
                    "occurred_at": "2021-01-02",
                    "event_type": "purchase",
                    "amount": 9.3e14,
                }
            ]
        )


def test_sums_beyond_the_exact_range_raise_instead_of_wrapping() -> None:
    n = 500  # 500 x 1e12 = 5e14 currency units: 5e18 fixed-point units, past 2**62
    events = events_frame(
        pd.DataFrame(
            {
                "customer_id": "c1",
                "occurred_at": pd.date_range("2021-01-02", periods=n, freq="min"),
                "event_type": "purchase",
                "amount": np.full(n, MAX_AMOUNT),
                "order_id": [f"o{i}" for i in range(n)],
            }
        )
    )
    with pytest.raises(FeaturesError, match="exact fixed-point range"):
        build_features(_one_customer(), events, as_of=pd.Timestamp("2021-03-01"))
