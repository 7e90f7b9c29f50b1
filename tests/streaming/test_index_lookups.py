"""The index's fast lookups equal their reference on random inputs: the re-tag's event
arrays by position (``event_columns``) equal the arrays of the looked-up tables with the
owners found by id, and the validation's candidate duplicates (``events_matching``)
equal the stored rows of exactly those (customer, time) pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import streaming.index as index_module
from features.schema import EVENT_COLUMNS, arrow_table
from streaming.index import CustomerFacts
from streaming.retag import event_columns_of
from tests.streaming.conftest import T0, Setup


def _index_with_live(setup: Setup, rng: np.random.Generator) -> tuple[CustomerFacts, list[str]]:
    """An index over the stored events plus live batches (own and another writer's)."""
    index = CustomerFacts(setup.store, setup.live)
    index.refresh()
    stored = setup.store.load_events()
    later = stored.iloc[rng.choice(len(stored), size=120, replace=False)].reset_index(drop=True)
    later["occurred_at"] = T0 + pd.to_timedelta(rng.integers(0, 86_000, size=120), unit="s")
    for k, rows in enumerate(np.array_split(np.arange(len(later)), 6)):
        batch = later.iloc[rows].reset_index(drop=True)
        appended = setup.live.append(batch, [f"e{k}-{i}" for i in range(len(batch))])
        if k % 2:
            index.refresh()
        else:
            index.add(batch, appended.segment)
    ids = setup.store.load_customers()["customer_id"].astype(str).tolist()
    return index, ids


def _arrays_by_event(columns: object, ids: list[str]) -> list[tuple[object, ...]]:
    c = columns
    names = np.asarray(c.type_names, dtype=object)  # type: ignore[attr-defined]
    rows = zip(
        [ids[k] if k >= 0 else None for k in c.customer.tolist()],  # type: ignore[attr-defined]
        c.t_us.tolist(),  # type: ignore[attr-defined]
        names[c.type_code].tolist(),  # type: ignore[attr-defined]
        [None if a != a else a for a in c.amount.tolist()],  # type: ignore[attr-defined]
        c.category.to_pylist(),  # type: ignore[attr-defined]
        c.order_id.to_pylist(),  # type: ignore[attr-defined]
        strict=True,
    )
    return list(rows)


def test_event_columns_equal_the_tables_with_owners_found_by_id(setup: Setup) -> None:
    rng = np.random.default_rng(11)
    index, ids = _index_with_live(setup, rng)
    for size in (1, 7, 40, len(ids)):
        chosen = [ids[i] for i in rng.choice(len(ids), size=size, replace=False)]
        fast = index.event_columns(chosen)
        reference = event_columns_of(index.event_tables(chosen), chosen)
        # Row for row, in the same order (ties in time keep their order).
        assert _arrays_by_event(fast, chosen) == _arrays_by_event(reference, chosen)
        assert len(fast.customer) == len(index.events_of(chosen))
    # Unknown ids have no events; known ones keep their own positions.
    mixed = ["nobody", ids[3], "nobody-else", ids[0]]
    got = _arrays_by_event(index.event_columns(mixed), mixed)
    assert {row[0] for row in got} <= {ids[3], ids[0]}
    assert got == _arrays_by_event(event_columns_of(index.event_tables(mixed), mixed), mixed)


def test_events_matching_is_exactly_the_stored_rows_of_those_pairs(setup: Setup) -> None:
    rng = np.random.default_rng(12)
    index, ids = _index_with_live(setup, rng)
    everything = index.events_of(ids)
    for size in (1, 5, 60):
        hit = everything.iloc[rng.choice(len(everything), size=size, replace=False)]
        # Keys: real pairs, a stored customer at another time, a stored time of another
        # customer, an unknown customer.
        other_time = hit.assign(occurred_at=hit["occurred_at"] + pd.Timedelta(seconds=1))
        other_customer = hit.assign(customer_id=np.roll(hit["customer_id"].to_numpy(), 1))
        unknown = hit.assign(customer_id="nobody")
        keys = pd.concat([hit, other_time, other_customer, unknown], ignore_index=True)
        keys = keys[["customer_id", "occurred_at"]]
        got = index.events_matching(arrow_table(keys))
        assert got is not None
        assert list(got.columns) == list(EVENT_COLUMNS)
        wanted = set(zip(keys["customer_id"].astype(str), keys["occurred_at"], strict=True))
        mine = [
            (str(c), t) in wanted
            for c, t in zip(everything["customer_id"], everything["occurred_at"], strict=True)
        ]
        want = everything[np.asarray(mine, dtype=bool)]
        key = ["customer_id", "occurred_at", "event_type", "order_id"]
        assert sorted(got[key].astype(str).itertuples(index=False)) == sorted(
            want[key].astype(str).itertuples(index=False)
        )
        assert len(got) >= size
    none = index.events_matching(
        pa.table(
            {
                "customer_id": pa.array([], pa.string()),
                "occurred_at": pa.array([], pa.timestamp("us", tz="UTC")),
            }
        )
    )
    assert none is None
    # Keys at times nothing is stored at: nothing.
    later = pd.DataFrame(
        {"customer_id": ids[:3], "occurred_at": [pd.Timestamp("2031-01-01", tz="UTC")] * 3}
    )
    assert index.events_matching(arrow_table(later)) is None


def test_the_grid_refuses_a_customer_and_tag_filled_twice() -> None:
    from streaming.retag import _Slots
    from tags.errors import TagStoreError

    slots = _Slots(6)
    slots.put(np.array([0, 2]), ["a", "b"], np.nan, "rule", "x@1")
    slots.put(np.array([5]), ["c"], 0.5, "model", "m/1")
    assert slots.value.tolist() == ["a", None, "b", None, None, "c"]
    with pytest.raises(TagStoreError, match="at most one"):
        slots.put(np.array([1, 1]), ["d", "e"], np.nan, "rule", "x@1")  # twice in one put
    again = _Slots(3)
    again.put(np.array([1]), ["a"], np.nan, "rule", "x@1")
    with pytest.raises(TagStoreError, match="at most one"):
        again.put(np.array([0, 1]), ["b", "c"], np.nan, "rule", "x@1")  # filled before


def test_lookups_through_the_micro_batch_dictionary_equal_the_full_one(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = CustomerFacts(setup.store, setup.live)
    index.refresh()
    ids = setup.store.load_customers()["customer_id"].astype(str).tolist()
    rng = np.random.default_rng(5)
    monkeypatch.setattr(index_module, "_HOT_MAX", 12)  # exercise its emptying too
    for size in (1, 5, 9, 13, 30):
        asked = [ids[i] for i in rng.choice(len(ids), size=size)] + ["nobody", ids[0], "nobody"]
        expected = [index._customer_pos.get(c) for c in asked]
        # Asked twice: the second answer comes from the small dictionary where it can.
        assert index._find(asked) == expected
        assert index._find(asked) == expected
        assert len(index._hot) <= max(12, len(asked))
        assert index.known(asked) == list(dict.fromkeys(c for c in asked if c != "nobody"))
    # Positions change with a new import: the micro-batch dictionary is emptied with them.
    index._hot["nobody"] = 0
    index.refresh()
    assert index._find(["nobody"]) == [None]
