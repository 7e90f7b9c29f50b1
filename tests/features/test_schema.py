from __future__ import annotations

import pandas as pd
import pytest

from features import FactsConfig, SchemaError, check_events, customers_frame, events_frame


def test_events_frame_converts_offsets_to_utc() -> None:
    events = events_frame(
        [
            {"customer_id": "c1", "occurred_at": "2021-01-02T10:00:00+08:00", "event_type": "x"},
        ]
    )
    assert events.loc[0, "occurred_at"] == pd.Timestamp("2021-01-02T02:00:00Z")
    assert str(events["occurred_at"].dtype) == "datetime64[us, UTC]"
    assert pd.isna(events.loc[0, "amount"])


def test_events_frame_names_the_missing_column() -> None:
    with pytest.raises(SchemaError, match="'event_type'"):
        events_frame([{"customer_id": "c1", "occurred_at": "2021-01-01"}])


def test_check_events_refuses_negative_amount() -> None:
    events = events_frame(
        [{"customer_id": "c", "occurred_at": "2021-01-01", "event_type": "refund", "amount": 1}]
    )
    events.loc[0, "amount"] = -1.0
    with pytest.raises(SchemaError, match=">= 0"):
        check_events(events)


def test_check_events_names_wrong_dtype() -> None:
    events = events_frame(
        [{"customer_id": "c", "occurred_at": "2021-01-01", "event_type": "browse"}]
    )
    events["amount"] = events["amount"].astype("object")
    with pytest.raises(SchemaError, match="Column 'amount' of the events table must have dtype"):
        check_events(events)


def test_customers_frame_adds_declared_attributes_and_refuses_duplicates() -> None:
    config = FactsConfig()
    customers = customers_frame([{"customer_id": "a", "signup_at": "2020-05-01"}], config)
    assert [a.name for a in config.attributes] == list(customers.columns[2:])
    with pytest.raises(SchemaError, match="unique"):
        customers_frame(
            [
                {"customer_id": "a", "signup_at": "2020-05-01"},
                {"customer_id": "a", "signup_at": "2020-05-02"},
            ]
        )
