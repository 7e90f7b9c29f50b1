"""A text model input's level positions (``scoring.contract._text_levels``): the Arrow
lookup (many rows) and the dict lookup (a few rows) agree, NaN for missing values and
values that are not levels; ``columns_matrix`` uses them for Arrow text columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scoring.contract as contract_module
from scoring.contract import ModelContract, _text_levels, columns_matrix

_WORDS = st.one_of(st.none(), st.sampled_from(["", "a", "b", "é", "zz", "unseen"]))


@settings(max_examples=60, deadline=None)
@given(words=st.lists(_WORDS, max_size=150), large=st.booleans())
def test_arrow_lookup_equals_the_dict_lookup(words: list[str | None], large: bool) -> None:
    levels = ("", "a", "b", "zz", "é")
    values = pa.array(words, pa.large_string() if large else pa.string())
    with pytest.MonkeyPatch.context() as m:
        m.setattr(contract_module, "_FEW_ROWS", 10**9)
        looped = np.asarray(_text_levels(values, levels), dtype=np.float64)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(contract_module, "_FEW_ROWS", -1)
        kernel = np.asarray(_text_levels(values, levels), dtype=np.float64)
    np.testing.assert_array_equal(kernel, looped)
    want = [np.nan if w is None or w not in levels else float(levels.index(w)) for w in words]
    np.testing.assert_array_equal(kernel, np.asarray(want, dtype=np.float64))


def test_matrix_of_many_text_rows() -> None:
    contract = ModelContract(
        target="churn",
        horizon_days=30,
        feature_names=["x", "channel"],
        categorical_levels={"channel": ["email", "web"]},
    )
    n = 300
    channel = pa.chunked_array([pa.array(["web", None, "email", "fax"] * (n // 4))])
    matrix = columns_matrix({"x": np.arange(n, dtype=np.float64), "channel": channel}, n, contract)
    np.testing.assert_array_equal(matrix[:4, 1], [1.0, np.nan, 0.0, np.nan])
    np.testing.assert_array_equal(matrix[:, 0], np.arange(n, dtype=np.float64))
