"""The known-customer index of an import: exact positions, or no index at all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import spill as spill_module
from features.id_index import IdIndex, surely_distinct


def _expected(known: list[str], asked: list[str | None]) -> np.ndarray:
    found = pd.Index(known, dtype=object).get_indexer(pd.Index(asked, dtype=object))
    return np.where([a is None for a in asked], -1, found)


_IDS = st.text(alphabet=st.sampled_from(["a", "b", "\x00", "é", "C", "1", " "]), max_size=19)


@settings(max_examples=200, deadline=None)
@given(st.lists(_IDS, unique=True, max_size=40), st.lists(st.none() | _IDS, max_size=60))
def test_positions_equal_a_dictionary_lookup(known: list[str], others: list[str | None]) -> None:
    index = IdIndex.build(pa.array(known, pa.string()))
    asked = [*known[::2], *others]
    if index is None:
        # Only where two known ids share a key: they differ by trailing NUL bytes.
        stripped = [k.rstrip("\x00") for k in known if len(k.encode()) <= 8]
        assert len(set(stripped)) < len(stripped)
        return
    got = index.positions(pa.array(asked, pa.large_string()))
    assert got.tolist() == _expected(known, asked).tolist()


@pytest.mark.parametrize(
    "known",
    [
        [f"C{i}" for i in range(5000)],  # one word: exact keys
        [f"customer-{i:012d}@example.org" for i in range(5000)],  # hashed, checked by value
    ],
)
def test_short_and_long_ids_and_sliced_arrays(known: list[str]) -> None:
    index = IdIndex.build(pa.array(known))
    assert index is not None
    rng = np.random.default_rng(5)
    asked = [*rng.choice(known, 3000).tolist(), "C", "", None, known[0] + "x", known[1][:-1]]
    whole = pa.array(["pad", *asked, "pad"], pa.large_string())
    sliced = whole.slice(1, len(asked))  # an offset into shared buffers
    assert index.positions(sliced).tolist() == _expected(known, asked).tolist()


def test_no_index_for_null_or_clashing_known_ids() -> None:
    assert IdIndex.build(pa.array(["a", None])) is None
    assert IdIndex.build(pa.array(["C1", "C1\x00"])) is None
    assert IdIndex.build(pa.array([], pa.string())) is not None


@pytest.mark.parametrize("n_parts", [2, 3, 7, 40])
def test_range_bounds_from_ranks_equal_those_from_the_ids(n_parts: int) -> None:
    rng = np.random.default_rng(n_parts)
    known = pa.array([f"k{i:05d}" for i in rng.permutation(3000)], pa.large_string())
    position = rng.integers(0, 2000, 20_000) ** 2 // 2000  # skewed: some ids many times
    order = np.asarray(pa.compute.sort_indices(known), dtype=np.int64)
    rank = np.empty(len(known), dtype=np.int64)
    rank[order] = np.arange(len(known))
    from_ids = spill_module._range_bounds(
        pa.chunked_array([known.take(pa.array(position))]), n_parts
    )
    bound_ranks = spill_module._rank_bounds(rank[position], len(known), n_parts)
    assert known.take(pa.array(order[bound_ranks])).to_pylist() == from_ids.to_pylist()


@settings(max_examples=200, deadline=None)
@given(st.lists(_IDS, max_size=40))
def test_surely_distinct_never_passes_a_repeat(ids: list[str]) -> None:
    distinct = surely_distinct(pa.array(ids, pa.string()))
    if len(set(ids)) < len(ids):
        assert not distinct
    elif not distinct:  # a false alarm only from ids that differ by trailing NUL bytes
        stripped = [i.rstrip("\x00") for i in ids if len(i.encode()) <= 8]
        assert len(set(stripped)) < len(stripped)


def test_surely_distinct_on_long_and_chunked_ids() -> None:
    ids = [f"customer-{i:012d}@example.org" for i in range(3000)]
    assert surely_distinct(pa.chunked_array([ids[:1000], ids[1000:]]))
    assert not surely_distinct(pa.array([*ids, ids[17]]))
