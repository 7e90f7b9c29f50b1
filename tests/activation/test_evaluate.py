"""Trigger events: the fast payload assembly equals the canonical JSON of the event."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from activation.definitions import Trigger
from activation.evaluate import Firing, trigger_event, trigger_items
from activation.payloads import canonical

TRIGGER = Trigger(
    name="winback",
    owner="crm",
    purpose="marketing",
    role="marketing",
    destination="crm",
    on_exit="lifecycle_stage = 'active'",
    include=["value_tier", "old_customer", "rfm_segment"],
)
text = st.one_of(st.none(), st.text(min_size=1, max_size=8))


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.text(min_size=1, max_size=10), text, st.booleans(), text),
        max_size=20,
        unique_by=lambda r: r[0],
    )
)
def test_fast_payloads_are_the_canonical_json_of_the_event(rows: list) -> None:
    frame = pd.DataFrame(rows, columns=["customer_id", "value_tier", "old_customer", "rfm_segment"])
    frame["value_tier"] = frame["value_tier"].astype("string")
    frame["old_customer"] = frame["old_customer"].astype(bool)
    firing = Firing(frame, candidates=len(frame))
    as_of = pd.Timestamp("2024-02-29", tz="UTC")
    items = trigger_items(TRIGGER, 3, firing, group_id="g-1", as_of=as_of)
    assert len(items) == len(rows)
    for (key, customer, body), row in zip(items, rows, strict=True):
        tags = {"value_tier": row[1], "old_customer": row[2], "rfm_segment": row[3]}
        event = trigger_event(
            TRIGGER, 3, row[0], tags, group_id="g-1", as_of="2024-02-29T00:00:00Z"
        )
        assert body == canonical(event)
        assert (key, customer) == (event["id"], row[0])
        assert json.loads(body)["change"] == "left"
