"""The purchase-only regime: a transaction export with nothing but purchases."""

from __future__ import annotations

import pandas as pd
import pytest

from synthetic.purchase_log import purchase_log


def test_purchase_log_is_purchases_by_day_with_real_identical_repeats() -> None:
    data = purchase_log(800, start="2023-01-01", end="2023-12-31", seed=3, repeat_share=0.1)
    ev = data.events
    assert set(ev["event_type"]) == {"purchase"}
    assert ev[["order_id", "category", "product_id"]].isna().all().all()
    assert (ev["occurred_at"] == ev["occurred_at"].dt.normalize()).all()
    assert (ev["amount"] > 0).all()
    repeats = ev.duplicated().mean()
    assert 0.05 < repeats < 0.15  # about repeat_share / (1 + repeat_share)
    firsts = ev.groupby("customer_id")["occurred_at"].min()
    cust = data.customers.set_index("customer_id")
    assert set(cust.index) == set(firsts.index)
    pd.testing.assert_series_equal(
        cust.loc[firsts.index, "signup_at"], firsts, check_names=False, check_dtype=False
    )
    assert cust.drop(columns="signup_at").isna().all().all()
    again = purchase_log(800, start="2023-01-01", end="2023-12-31", seed=3, repeat_share=0.1)
    pd.testing.assert_frame_equal(ev, again.events)


def test_spend_is_heavy_tailed() -> None:
    ev = purchase_log(3000, start="2023-01-01", end="2023-12-31", seed=4).events
    per_customer = ev.groupby("customer_id")["amount"].sum().sort_values(ascending=False)
    top = per_customer.head(len(per_customer) // 10).sum() / per_customer.sum()
    assert top > 0.4


def test_bad_repeat_share_is_refused() -> None:
    with pytest.raises(ValueError, match="repeat_share"):
        purchase_log(10, seed=0, repeat_share=1.5)
