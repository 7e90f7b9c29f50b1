"""Preparing a log in time order without a per-row string hash or a comparison sort:
customer ids of at most 8 bytes looked up as exact words (:func:`short_id_codes`),
and each type's events placed by a stable counting sort by customer
(:func:`counting_order`). Both must give exactly what the general paths give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.coding import (
    counting_order,
    customer_runs,
    customer_time_sorted,
    short_id_codes,
    short_id_keys,
)
from features.events import prepare_events, whole_seconds
from features.spec import FAMILIES, FeatureSpec

# Byte order, not locale order; prefixes, multi-byte text, 1..8 bytes.
_KNOWN = ["a", "ab", "Z", "é", "b2", "b10", "C0", "C1", "C10", "C9", "zzzzzzzz", "0", "ñandú"]
_UNKNOWN = ["ac", "C", "C100", "zzzzzzzy", "", "é0", "abcdefg"]


def _arrow_codes(values: pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    found = pc.fill_null(pc.index_in(values, value_set=value_set), -1)
    return np.concatenate([np.asarray(c.to_numpy(zero_copy_only=False)) for c in found.chunks])


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
def test_short_id_codes_equal_arrow_lookups(text_type: pa.DataType) -> None:
    rng = np.random.default_rng(1)
    pool = np.array([*_KNOWN, *_UNKNOWN, None], dtype=object)
    values = pool[rng.integers(0, len(pool), 20_000)]
    # Sliced arrays (non-zero offsets) and chunk edges anywhere.
    whole = pa.array(["pad", *values], type=text_type).slice(1)
    chunked = pa.chunked_array([whole.slice(0, 3), whole.slice(3, 9_000), whole.slice(9_003)])
    value_set = pa.array(sorted(_KNOWN, key=str.encode), type=text_type)
    got = short_id_codes(chunked, value_set)
    assert got is not None
    np.testing.assert_array_equal(got, _arrow_codes(chunked, value_set))
    assert got.dtype == np.int64


def test_eight_byte_ids_are_read_as_words_in_place() -> None:
    ids = [f"C{i:07d}" for i in range(50_000)]
    values = pa.chunked_array([pa.array([*ids[::-1], "D0000000", "C0000000"])])
    got = short_id_codes(values, pa.array(ids))
    assert got is not None
    np.testing.assert_array_equal(got, [*range(49_999, -1, -1), -1, 0])


@pytest.mark.parametrize(
    "texts",
    [
        ["abc", "abcdefghi"],  # longer than one word
        ["abc", "ab\x00"],  # a NUL byte: "ab" and "ab\0" would share a word
    ],
)
def test_ids_that_do_not_fit_a_word_take_the_general_lookup(texts: list[str]) -> None:
    values = pa.chunked_array([pa.array(texts)])
    assert short_id_keys(values) is None
    assert short_id_codes(values, pa.array(["abc"])) is None
    assert short_id_codes(pa.chunked_array([pa.array(["abc"])]), pa.array(texts)) is None
    # customer_runs still codes them (Arrow's lookup), in time order too.
    n = 200_000
    rng = np.random.default_rng(4)
    many = pa.chunked_array([pa.array(np.array(texts, dtype=object)[rng.integers(0, 2, n)])])
    heads, codes = customer_runs(many, pa.array([texts[1]]))
    assert len(heads) == n
    np.testing.assert_array_equal(codes, _arrow_codes(many, pa.array([texts[1]])))


def test_no_known_ids_code_everything_as_unknown() -> None:
    got = short_id_codes(pa.chunked_array([pa.array(["a", None])]), pa.array([], pa.string()))
    assert got is not None
    np.testing.assert_array_equal(got, [-1, -1])


@settings(max_examples=60, deadline=None)
@given(
    codes=st.lists(st.integers(0, 40), max_size=300),
    extra=st.integers(0, 5),
)
def test_counting_order_is_a_stable_sort(codes: list[int], extra: int) -> None:
    code = np.array(codes, dtype=np.int64)
    n_codes = (max(codes) + 1 if codes else 0) + extra
    order, counts = counting_order(code, n_codes)
    np.testing.assert_array_equal(order, np.argsort(code, kind="stable"))
    np.testing.assert_array_equal(counts, np.bincount(code, minlength=n_codes))


def test_counting_order_refuses_codes_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"codes in 0\.\.2"):
        counting_order(np.array([0, 3], dtype=np.int64), 3)
    with pytest.raises(ValueError, match=r"codes in 0\.\.2"):
        counting_order(np.array([-1, 0], dtype=np.int64), 3)


@settings(max_examples=80, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 50)), min_size=2, max_size=400),
    time_ordered=st.booleans(),
)
def test_type_sort_equals_a_stable_lexsort_in_any_order(
    events: list[tuple[int, int]], time_ordered: bool
) -> None:
    code = np.array([c for c, _ in events], dtype=np.int64)
    t_all = np.array([t for _, t in events], dtype=np.int64) * 1_000_000
    if time_ordered:  # a log: the counting sort's path (ties keep the input order)
        order = np.argsort(t_all, kind="stable")
        code, t_all = code[order], t_all[order]
    rows = np.arange(len(code), dtype=np.int64)
    got_rows, got_code, got_t = customer_time_sorted(code, rows, t_all, 31)
    expected = np.lexsort((t_all, code))
    np.testing.assert_array_equal(got_rows, expected)
    np.testing.assert_array_equal(got_code, code[expected])
    np.testing.assert_array_equal(got_t, t_all[expected])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_events=st.integers(1, 300),
    ghost_share=st.sampled_from([0.0, 0.2]),
)
def test_any_input_order_gives_the_store_order_features(
    seed: int, n_events: int, ghost_share: float
) -> None:
    rng = np.random.default_rng(seed)
    n_customers = 12
    ids = [f"c{k:02d}" for k in range(n_customers)]
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            "signup_at": pd.to_datetime(["2023-01-01"] * n_customers, utc=True).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    who = np.array([*ids, "ghost"], dtype=object)[
        np.where(
            rng.random(n_events) < ghost_share, n_customers, rng.integers(0, n_customers, n_events)
        )
    ]
    # Whole seconds with many ties, and some microseconds.
    micros = rng.integers(0, 200, n_events) * 86_400_000_000 // 4
    micros += np.where(rng.random(n_events) < 0.2, rng.integers(1, 10**6, n_events), 0)
    types = np.array(["purchase", "browse", "refund", "complaint"])[rng.integers(0, 4, n_events)]
    events = pd.DataFrame(
        {
            "customer_id": pd.array(who, dtype="string"),
            "occurred_at": (
                pd.Timestamp("2023-01-02", tz="UTC") + pd.to_timedelta(micros, "us")
            ).astype("datetime64[us, UTC]"),
            "event_type": pd.array(types, dtype="string"),
            "amount": np.where(types == "browse", np.nan, rng.integers(1, 10_000, n_events) / 100),
            "category": pd.array(
                np.array(["shoes", "hats", None], dtype=object)[rng.integers(0, 3, n_events)],
                dtype="string",
            ),
            "order_id": pd.array(
                np.array(["o1", "o2", "o3", None], dtype=object)[rng.integers(0, 4, n_events)],
                dtype="string",
            ),
        }
    )
    cutoffs = [pd.Timestamp("2023-03-01", tz="UTC"), pd.Timestamp("2023-08-01", tz="UTC")]
    store = events.sort_values(["customer_id", "occurred_at"], kind="stable", ignore_index=True)
    in_time = events.sort_values("occurred_at", kind="stable", ignore_index=True)
    shuffled = events.iloc[rng.permutation(n_events)].reset_index(drop=True)
    # Every family that reads events (the customers here have no attributes).
    spec = FeatureSpec(families=[f for f in FAMILIES if f != "attributes"])
    expected = prepare_events(customers, store).build_features(cutoffs, spec=spec)
    for ordered in (in_time, shuffled):
        got = prepare_events(customers, ordered).build_features(cutoffs, spec=spec)
        pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("id_width", [8, 12])
def test_large_time_ordered_log_is_indexed_as_a_stable_lexsort(id_width: int) -> None:
    # Enough events for the threaded split (the largest type sorted on another core)
    # and the per-row lookup; 12-byte ids take Arrow's lookup instead of words. One
    # type has sub-second times (kept beside the keys), the others whole seconds.
    rng = np.random.default_rng(7)
    n_customers, n = 3_000, 120_000
    ids = [f"{'c' * (id_width - 6)}{k:06d}" for k in range(n_customers)]
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            "signup_at": pd.Series(pd.to_datetime(["2023-01-01"] * n_customers, utc=True)).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    who = rng.integers(0, n_customers + 50, n)  # some customers unknown
    kind = np.array(["browse", "login", "purchase"])[rng.choice(3, n, p=[0.6, 0.25, 0.15])]
    t_us = np.sort(rng.integers(0, 20_000, n)) * 1_000_000  # ties within customers
    sub = kind == "login"
    t_us[sub] += rng.integers(0, 1_000_000, int(sub.sum()))
    t_us = np.sort(t_us)  # still a log in time order
    events = pd.DataFrame(
        {
            "customer_id": pd.array(
                np.array([*ids, *(f"x{k}" for k in range(50))], dtype=object)[who],
                dtype="string",
            ),
            "occurred_at": pd.Series(
                pd.Timestamp("2023-01-02", tz="UTC") + pd.to_timedelta(t_us, "us")
            ).astype("datetime64[us, UTC]"),
            "event_type": pd.array(kind, dtype="string"),
            "amount": rng.integers(1, 1_000, n) / 100,
            "category": pd.array(["shoes"] * n, dtype="string"),
            "order_id": pd.array([f"o{k}" for k in range(n)], dtype="string"),
        }
    )
    prepared = prepare_events(customers, events)
    t_all = np.asarray(events["occurred_at"].to_numpy(dtype="datetime64[us]")).view(np.int64)
    code_all = np.where(who < n_customers, who, -1)  # ids sort as their numbers
    for name in ("browse", "login", "purchase"):
        typed = prepared.typed(name)
        rows = np.flatnonzero((kind == name) & (code_all >= 0))
        expected = rows[np.lexsort((t_all[rows], code_all[rows]))]
        np.testing.assert_array_equal(typed.rows_now(), expected)
        assert typed.rows_now().dtype == np.int32
        np.testing.assert_array_equal(typed.t_at(slice(None)), t_all[expected])
        np.testing.assert_array_equal(
            typed.starts,
            np.append(0, np.cumsum(np.bincount(code_all[rows], minlength=n_customers))),
        )
        seconds = t_all[expected] // 1_000_000 - prepared.base_sec
        np.testing.assert_array_equal(typed.key, (code_all[expected] << 32) | seconds)
    # The same index as from the fact store's order.
    store = prepare_events(
        customers,
        events.sort_values(["customer_id", "occurred_at"], kind="stable", ignore_index=True),
    )
    for name in ("browse", "login", "purchase"):
        np.testing.assert_array_equal(prepared.typed(name).key, store.typed(name).key)
    np.testing.assert_array_equal(prepared.order_counts(), store.order_counts())


@pytest.mark.parametrize("at", [0, 1 << 17, (1 << 17) + 5, 300_000])
def test_whole_seconds_finds_a_fraction_in_any_block(at: int) -> None:
    t_us = np.arange(300_001, dtype=np.int64) * 1_000_000
    assert whole_seconds(t_us)
    t_us[at] += 1
    assert not whole_seconds(t_us)
    assert whole_seconds(np.empty(0, dtype=np.int64))
