"""Sorting events by customer and time: for a file (the int64-key order equals Arrow's
stable two-key sort) and for the prepared index (equals a stable lexsort)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.coding import customer_time_sorted, sorted_hashes
from features.schema import EVENT_COLUMNS
from features.store_files import customer_time_order, sorted_by_rank, sorted_events


def _events(ids: list[str], micros: np.ndarray) -> pa.Table:
    n = len(ids)
    columns = {
        "customer_id": pa.array(ids, pa.large_string()),
        "occurred_at": pa.array(micros.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
        "event_type": pa.array(["purchase"] * n, pa.large_string()),
        "amount": pa.array(np.arange(n, dtype=np.float64)),  # tells rows apart
        "category": pa.nulls(n, pa.large_string()),
        "product_id": pa.nulls(n, pa.large_string()),
        "order_id": pa.nulls(n, pa.large_string()),
        "quantity": pa.nulls(n, pa.float64()),
    }
    assert list(columns) == list(EVENT_COLUMNS)
    return pa.table(columns)


def _arrow_sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("customer_id", "ascending"), ("occurred_at", "ascending")])


@pytest.mark.parametrize(
    ("span_us", "whole_seconds"),
    [
        (10**6 * 3600, False),  # microseconds fit next to the rank
        (10**6 * 86400 * 365 * 200, True),  # too wide for microseconds: whole seconds
        (10**6 * 86400 * 365 * 200, False),  # neither fits: lexsort
    ],
)
def test_order_equals_arrow_stable_sort(span_us: int, whole_seconds: bool) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    # Byte order, not locale order: "Z" < "a" < "é"; prefixes sort first.
    names = np.array(["a", "ab", "Z", "é", "b2", "b10", "C0", "C1", "C10", "C9"])
    ids = list(
        np.char.add(names[rng.integers(0, len(names), n)], rng.integers(0, 300, n).astype(str))
    )
    micros = rng.integers(0, span_us, n).astype(np.int64) + 1_600_000_000 * 10**6
    if whole_seconds:
        micros -= micros % 10**6
    micros[rng.random(n) < 0.2] = micros[0]  # many rows tie on (customer, time)
    table = _events(ids, micros)
    got = sorted_events(table)
    assert got.equals(_arrow_sorted(table))  # ties keep the file order (amount column)
    # Once sorted there is nothing to do.
    assert customer_time_order(got) is None
    assert sorted_events(got) is got


@pytest.mark.parametrize("span_us", [10**6 * 3600, 10**6 * 86400 * 365 * 200])
def test_sorting_by_known_ranks_equals_sorting_by_ids(span_us: int) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    known = np.array(["a", "ab", "Z", "é", "b2", "b10", "C0", "C1", "C10", "C9", "zz", "0"])
    # Ranks of all known ids, by byte order; a range's rows use a few of them (offset).
    rank_of = {name: 7 + r for r, name in enumerate(sorted(known, key=str.encode))}
    ids = list(known[rng.integers(2, 9, n)])
    micros = rng.integers(0, span_us, n).astype(np.int64) + 1_600_000_000 * 10**6
    micros[rng.random(n) < 0.2] = micros[0]  # ties on (customer, time) keep file order
    table = _events(ids, micros)
    rank = np.array([rank_of[i] for i in ids])
    got = sorted_by_rank(table, rank)
    assert got.equals(sorted_events(table))
    assert got.equals(_arrow_sorted(table))
    order = np.argsort(rank, kind="stable")
    ranked = table.take(pa.array(order))
    assert sorted_by_rank(ranked, rank[order]).equals(got)


def test_time_ordered_log_and_chunked_columns() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    ids = list(np.char.add("C", rng.integers(0, 400, n).astype(str)))
    micros = np.sort(rng.integers(0, 10**6 * 86400 * 700, n)).astype(np.int64)
    table = _events(ids, micros)
    chunked = pa.concat_tables([table.slice(0, 1234), table.slice(1234)])
    assert sorted_events(chunked).equals(_arrow_sorted(table))


def test_null_keys_fall_back_to_arrow_sort() -> None:
    table = _events(["b", "a", "a"], np.array([3, 2, 1], dtype=np.int64) * 10**6)
    with_null = table.set_column(0, "customer_id", pa.array(["b", None, "a"], pa.large_string()))
    assert sorted_events(with_null).equals(_arrow_sorted(with_null))
    assert sorted_events(table).column("amount").to_pylist() == [2.0, 1.0, 0.0]


@pytest.mark.parametrize("arrival", ["time", "grouped", "random"])
def test_customer_time_sorted_equals_stable_lexsort(arrival: str) -> None:
    rng = np.random.default_rng(11)
    n = 6000
    code_all = rng.integers(0, 500, n).astype(np.int64)
    t_all = rng.integers(0, 10**6 * 86400 * 30, n).astype(np.int64)
    t_all[rng.random(n) < 0.1] = t_all[0]  # ties on (customer, time)
    if arrival == "time":
        order = np.argsort(t_all, kind="stable")
    elif arrival == "grouped":
        order = np.lexsort((t_all, code_all))
    else:
        order = np.arange(n)
    code_all, t_all = code_all[order], t_all[order]
    rows = np.flatnonzero(rng.random(n) < 0.4)  # one event type's rows
    want = rows[np.lexsort((t_all[rows], code_all[rows]))]
    got_rows, got_code, got_t = customer_time_sorted(code_all[rows].copy(), rows, t_all)
    assert np.array_equal(got_rows, want)
    assert np.array_equal(got_code, code_all[want])
    assert np.array_equal(got_t, t_all[want])


def test_seconds_base_is_the_first_second_and_refuses_136_years() -> None:
    from features.errors import FeaturesError
    from features.event_arrays import REL_MAX, SEC_US, seconds_base

    t = np.array([5 * SEC_US + 999_999, 2 * SEC_US + 1, 9 * SEC_US], dtype=np.int64)
    assert seconds_base(t) == 2
    assert seconds_base(np.array([], dtype=np.int64)) == 0
    just_fits = np.array([0, (REL_MAX - 1) * SEC_US], dtype=np.int64)
    assert seconds_base(just_fits) == 0
    with pytest.raises(FeaturesError, match="Expected events to span less than 136 years"):
        seconds_base(np.array([0, REL_MAX * SEC_US], dtype=np.int64))


@pytest.mark.parametrize("distinct", [3, 4000])
def test_ids_read_by_rank_and_few_valued_columns_equal_the_plain_gather(distinct: int) -> None:
    rng = np.random.default_rng(17)
    n = 5000
    known = np.array(sorted({f"K{i}" for i in range(300)} | {"é", "Z", "a", ""}, key=str.encode))
    ids_by_rank = pa.array(known, pa.large_string())
    picked = rng.integers(0, len(known), n)
    micros = rng.integers(0, 10**6 * 86400, n).astype(np.int64)
    micros[rng.random(n) < 0.2] = micros[0]  # ties keep the file order
    table = _events(list(known[picked]), micros)
    # Few or many distinct values, some missing: the dictionary path and its fallback.
    values = np.char.add("v", rng.integers(0, distinct, n).astype(str)).astype(object)
    values[rng.random(n) < 0.1] = None
    for name in ("event_type", "category", "product_id"):
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(values, pa.large_string())
        )
    got = sorted_by_rank(table, picked + 3, ids_by_rank=pa.array([None] * 3 + list(known)))
    assert got.equals(_arrow_sorted(table))
    assert sorted_by_rank(table, picked, ids_by_rank=ids_by_rank).equals(_arrow_sorted(table))
    assert sorted_by_rank(table, picked).equals(_arrow_sorted(table))


@st.composite
def _ranked_events(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Customer ranks and microsecond times of a range's rows, random or adversarial:
    dense or sparse ranks (the counting sort and its fallback), one customer, few
    distinct times (ties that must keep the file order), whole seconds or not, spans
    too wide to pack, rows already sorted, reversed or grouped."""
    n = draw(st.integers(2, 400))
    ranks = draw(st.sampled_from(["dense", "sparse", "one", "few"]))
    high = {"dense": n // 3 + 1, "sparse": n * 50, "one": 0, "few": 2}[ranks]
    rank = np.array(draw(st.lists(st.integers(0, high), min_size=n, max_size=n)), np.int64)
    times = draw(st.sampled_from(["ties", "seconds", "micros", "too wide"]))
    high_t = {"ties": 3, "seconds": 10**4, "micros": 10**12, "too wide": 2**62}[times]
    micros = np.array(draw(st.lists(st.integers(0, high_t), min_size=n, max_size=n)), np.int64)
    if times == "seconds":
        micros *= 10**6
    arrival = draw(st.sampled_from(["as drawn", "sorted", "reversed", "grouped"]))
    if arrival != "as drawn":
        order = np.lexsort((micros, rank))
        order = order[::-1] if arrival == "reversed" else order
        if arrival == "grouped":  # by customer, times out of order inside each
            order = np.argsort(rank, kind="stable")
        rank, micros = rank[order], micros[order]
    return rank, micros


@settings(max_examples=300, deadline=None)
@given(_ranked_events())
def test_range_sort_equals_a_stable_lexsort(drawn: tuple[np.ndarray, np.ndarray]) -> None:
    rank, micros = drawn
    table = _events([f"K{r}" for r in rank], micros - micros.min() + 1_600_000_000 * 10**6)
    want = table.take(pa.array(np.lexsort((micros, rank))))
    assert sorted_by_rank(table, rank + 5).equals(want)  # ties in file order: amount
    order = customer_time_order(table)
    by_ids = table if order is None else table.take(pa.array(order))
    assert by_ids.equals(_arrow_sorted(table))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["random", "shared top bits", "few values", "sorted", "reversed"]),
    st.integers(0, 40_000),
    st.integers(0, 2**32),
)
def test_sorted_hashes_equal_a_plain_sort(kind: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64)
    if kind == "shared top bits":  # one bucket: the slow path, still in order
        hashes >>= np.uint64(20)
    elif kind == "few values":
        hashes = hashes[rng.integers(0, min(3, n), n)] if n else hashes
    elif kind in ("sorted", "reversed"):
        hashes = np.sort(hashes)[:: 1 if kind == "sorted" else -1]
    before = hashes.copy()
    got = sorted_hashes(hashes)
    assert got.dtype == np.uint64
    assert np.array_equal(got, np.sort(before))
    assert np.array_equal(hashes, before)  # the input is left as it was
