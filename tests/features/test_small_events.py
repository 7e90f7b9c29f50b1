"""The live path's small event index (``features.small_events``): its category groups
(built in Python for a few events) are the batch index's arrays, without asking Arrow's
pool to hand pages back on every call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import features.events
import features.small_events
from features.events import PreparedEvents, prepare_events
from features.small_events import CustomerArrays, EventColumns, SmallEvents

_T0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1000)
_DAY_US = 86_400 * 10**6


def _small() -> SmallEvents:
    customers = CustomerArrays(
        ids=["b", "a"],
        signup_us=np.array([_T0 - 90 * _DAY_US, _T0 - 60 * _DAY_US]),
        attributes={},
        dtypes={},
    )
    events = EventColumns(
        customer=np.array([0, 1, 0, 1, 0]),
        t_us=_T0 + np.array([1, 2, 3, 4, 5]) * _DAY_US,
        type_code=np.array([0, 0, 0, 1, 0]),
        type_names=["browse", "purchase"],
        amount=np.array([np.nan, np.nan, np.nan, 12.5, np.nan]),
        category=pa.array(["shoes", "bags", None, "bags", "shoes"], pa.large_string()),
        order_id=pa.array([None, None, None, "o1", None], pa.large_string()),
    )
    return SmallEvents(customers, events)


def _batch() -> features.events.PreparedEvents:
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(["b", "a"], dtype="string"),
            "signup_at": pd.to_datetime(
                [_T0 - 90 * _DAY_US, _T0 - 60 * _DAY_US], unit="us", utc=True
            ),
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": pd.array(["b", "a", "b", "a", "b"], dtype="string"),
            "occurred_at": pd.to_datetime(
                _T0 + np.array([1, 2, 3, 4, 5]) * _DAY_US, unit="us", utc=True
            ),
            "event_type": pd.array(
                ["browse", "browse", "browse", "purchase", "browse"], dtype="string"
            ),
            "amount": [np.nan, np.nan, np.nan, 12.5, np.nan],
            "category": pd.array(["shoes", "bags", None, "bags", "shoes"], dtype="string"),
            "order_id": pd.array([None, None, None, "o1", None], dtype="string"),
        }
    )
    return prepare_events(customers, events)


def test_small_index_groups_skip_the_pool_release(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(features.events, "release_arrow_memory", lambda: calls.append(1))
    small = _small().groups("browse")
    assert calls == []
    batch = _batch().groups("browse")
    assert calls  # the batch index still hands pages back after building its groups
    for field in ("seconds", "bounds", "code", "cat", "run_starts", "labels"):
        np.testing.assert_array_equal(getattr(small, field), getattr(batch, field))


def _random_small(draw: st.DrawFn) -> tuple[SmallEvents, SmallEvents]:
    n = draw(st.integers(1, 4))
    size = draw(st.integers(0, 40))
    labels = st.one_of(st.none(), st.sampled_from(["shoes", "bags", "a", "a\x00", "é", "Z", ""]))

    def build() -> SmallEvents:
        customers = CustomerArrays(
            ids=[f"c{k}" for k in range(n)][::-1],
            signup_us=np.full(n, _T0 - 90 * _DAY_US),
            attributes={},
            dtypes={},
        )
        events = EventColumns(
            customer=np.array(owners, dtype=np.int64),
            t_us=_T0 + np.array(times, dtype=np.int64),
            type_code=np.array(types, dtype=np.int64),
            type_names=["browse", "purchase"],
            amount=np.full(size, 1.0),
            category=pa.array(categories, pa.large_string()),
            order_id=pa.array([f"o{k}" for k in range(size)], pa.large_string()),
        )
        return SmallEvents(customers, events)

    owners = draw(st.lists(st.integers(-1, n - 1), min_size=size, max_size=size))
    times = draw(st.lists(st.integers(0, 3 * _DAY_US), min_size=size, max_size=size))
    types = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    categories = draw(st.lists(labels, min_size=size, max_size=size))
    return build(), build()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_small_groups_are_the_batch_codes(data: st.DataObject) -> None:
    small, other = _random_small(data.draw)
    for event_type in small.event_types:
        got = small.groups(event_type)
        expected = PreparedEvents.groups(other, event_type)  # the batch index's code
        for field in ("seconds", "bounds", "code", "cat", "run_starts", "labels"):
            mine, theirs = getattr(got, field), getattr(expected, field)
            assert mine.dtype == theirs.dtype, field
            np.testing.assert_array_equal(mine, theirs, err_msg=field)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_small_order_flags_are_first_of_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 3))
    size = data.draw(st.integers(0, 30))
    owners = data.draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size))
    times = data.draw(st.lists(st.integers(0, 5), min_size=size, max_size=size))
    orders = data.draw(
        st.lists(
            st.one_of(st.none(), st.sampled_from(["o1", "o2", "o3", ""])),
            min_size=size,
            max_size=size,
        )
    )

    def build() -> SmallEvents:
        return SmallEvents(
            CustomerArrays([f"c{k}" for k in range(n)], np.full(n, _T0), {}, {}),
            EventColumns(
                customer=np.array(owners, dtype=np.int64),
                t_us=_T0 + np.array(times, dtype=np.int64) * _DAY_US,
                type_code=np.zeros(size, dtype=np.int64),
                type_names=["purchase"],
                amount=np.full(size, 1.0),
                category=pa.array([None] * size, pa.large_string()),
                order_id=pa.array(orders, pa.large_string()),
            ),
        )

    small = build()
    flags = small._new_order_flags()
    # The batch kernel over the same purchases (exact dictionary codes as keys).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features.small_events, "FEW_EVENTS", -1)
        expected = build()._new_order_flags()
    assert flags.dtype == expected.dtype
    np.testing.assert_array_equal(flags, expected)
    # Orders counted: one per purchase without an id, one per (customer, id) otherwise.
    named = {(o, i) for o, i in zip(owners, orders, strict=True) if i is not None}
    assert int(flags.sum()) == orders.count(None) + len(named)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_small_purchase_days_are_the_batch_arrays(data: st.DataObject) -> None:
    small, other = _random_small(data.draw)
    if "purchase" not in small.event_types:
        return
    got = small.days()
    expected = PreparedEvents.days(other)  # the batch index's code
    assert got is small.days()  # kept
    for field in ("row_cs", "code", "day", "gap", "gap_sq_cs"):
        mine, theirs = getattr(got, field), getattr(expected, field)
        assert mine.dtype == theirs.dtype, field
        np.testing.assert_array_equal(mine, theirs, err_msg=field)
