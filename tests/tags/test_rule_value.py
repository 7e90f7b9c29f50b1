"""``tags.rule_arrays.rule_value`` of Arrow text: the Arrow kernel (many rows) and the
Python loop (a few rows) give the same codes and categories, those of the frame path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tags.rule_arrays as rule_arrays
from tags.rule_arrays import rule_value
from tags.rules.values import from_series

_WORDS = st.one_of(st.none(), st.sampled_from(["", "a", "b", "é", "zz", "A", "b "]))


def _both(values: pa.Array | pa.ChunkedArray, monkeypatch: pytest.MonkeyPatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(rule_arrays, "_FEW_ROWS", 10**9)
        looped = rule_value(values)
    with monkeypatch.context() as m:
        m.setattr(rule_arrays, "_FEW_ROWS", -1)
        kernel = rule_value(values)
    return looped, kernel


@settings(max_examples=60, deadline=None)
@given(words=st.lists(_WORDS, max_size=150), large=st.booleans(), chunks=st.integers(1, 3))
def test_the_kernel_codes_text_as_the_loop(
    words: list[str | None], large: bool, chunks: int
) -> None:
    kind = pa.large_string() if large else pa.string()
    cut = [len(words) * k // chunks for k in range(chunks + 1)]
    values = pa.chunked_array(
        [pa.array(words[cut[k] : cut[k + 1]], kind) for k in range(chunks)], type=kind
    )
    with pytest.MonkeyPatch.context() as mp:
        looped, kernel = _both(values, mp)
    np.testing.assert_array_equal(kernel.data, looped.data)
    assert kernel.cats.tolist() == looped.cats.tolist()
    assert kernel.kind == looped.kind
    # And both are the frame's: factorize of the same text column.
    framed = from_series(pd.Series(words, dtype="string"))
    decoded = [None if c < 0 else kernel.cats[c] for c in kernel.data]
    assert decoded == [None if c < 0 else framed.cats[c] for c in framed.data]


def test_many_rows_are_coded_in_first_appearance_order() -> None:
    values = pa.array(["y", None, "x", "", "y"] * 40)
    got = rule_value(values)
    assert got.cats.tolist() == ["y", "x", ""]
    assert got.data[:5].tolist() == [0, -1, 1, 2, 0]
    assert len(got.data) == 200
