"""The live path's feature blocks (``features.column_blocks``): ``cutoff_columns`` writes
each numeric feature into a row of its dtype's block, and a model's matrix read from the
blocks equals the one stacked from the arrays (and the batch frame's ``model_matrix``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.catalog import feature_catalog
from features.column_blocks import ColumnBlocks, block_layout, plain_assignment
from features.cutoffs import _dtypes_of, cutoff_columns
from features.errors import FeaturesError
from features.events import prepare_events
from features.spec import default_spec
from scoring.contract import ModelContract, categorical_levels_of, columns_matrix, model_matrix
from synthetic import generate

AS_OF = pd.Timestamp("2024-09-01", tz="UTC")


@pytest.fixture(scope="module")
def columns() -> Any:
    data = generate(60, start="2024-01-01", end="2024-09-30", seed=5)
    return cutoff_columns(prepare_events(data.customers, data.events), AS_OF, default_spec())


def test_numeric_features_are_rows_of_one_block_per_dtype(columns: Any) -> None:
    catalog = feature_catalog(default_spec())
    blocks = columns.blocks
    assert isinstance(blocks, ColumnBlocks)
    numeric = [i for i in catalog if i.dtype in ("float64", "float32", "int64", "int32", "bool")]
    assert {np.dtype(i.dtype) for i in numeric} == set(blocks.blocks)
    for info in numeric:
        values = columns.columns[info.name]
        dtype, row = blocks.layout.slots[info.name]
        assert values.dtype == np.dtype(info.dtype) == dtype
        assert values.flags.c_contiguous
        assert len(values) == len(columns)
        # The row itself (a view of the block): no array of its own, none shared elsewhere.
        assert values.base is blocks.blocks[dtype]
        np.testing.assert_array_equal(blocks.blocks[dtype][row], values)
    # Each feature its own row: writing one row changes no other feature.
    frame = columns.frame().copy()
    first = numeric[0].name
    before = {i.name: columns.columns[i.name].copy() for i in numeric[1:]}
    columns.columns[first][...] = 0
    for name, values in before.items():
        np.testing.assert_array_equal(columns.columns[name], values)
    columns.columns[first][...] = frame[first].to_numpy()


def test_matrix_from_blocks_equals_the_stacked_and_the_frame_matrix(columns: Any) -> None:
    frame = columns.frame()
    names = [c for c in frame.columns if c != "customer_id"]
    rng = np.random.default_rng(1)
    for picked in (names, list(rng.permutation(names)[:30]), names[::-1]):
        levels = categorical_levels_of(frame, list(picked))
        contract = ModelContract(
            target="churn", horizon_days=30, feature_names=list(picked), categorical_levels=levels
        )
        n = len(columns)
        stacked = columns_matrix(columns.columns, n, contract)
        from_blocks = columns_matrix(columns.columns, n, contract, columns.blocks)
        np.testing.assert_array_equal(from_blocks, stacked)
        np.testing.assert_array_equal(from_blocks, model_matrix(frame, contract))


def test_conversions_are_the_frame_outputs() -> None:
    """Safe casts and float roundings are plain assignments; an int that does not fit
    its narrower catalogue dtype is refused, as the frame's output refuses it."""
    assert plain_assignment(np.dtype(np.int32), np.dtype(np.int64))
    assert plain_assignment(np.dtype(np.float64), np.dtype(np.float32))
    assert plain_assignment(np.dtype(bool), np.dtype(np.float64))
    assert not plain_assignment(np.dtype(np.int64), np.dtype(np.int32))
    assert not plain_assignment(np.dtype(np.float64), np.dtype(np.int64))
    layout = block_layout(_dtypes_of(feature_catalog(default_spec())))
    blocks = ColumnBlocks(layout, 3)
    assert blocks.row("top_category") is None  # text: kept outside the blocks
    assert blocks.row("frequency_orders") is not None
    # rows(): every block feature's row at once, the same views row() gives.
    rows = blocks.rows()
    assert set(rows) == set(layout.slots)
    for name, row in rows.items():
        same = blocks.row(name)
        assert same is not None
        assert np.shares_memory(row, same)
        assert row.shape == same.shape
        row[...] = 1
        assert (same == 1).all()


def test_a_value_out_of_its_dtype_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import features.families.rfm as rfm

    data = generate(20, start="2024-01-01", end="2024-09-30", seed=2)
    prepared = prepare_events(data.customers, data.events)
    original = rfm.columns

    def too_big(cut: Any) -> dict[str, Any]:
        cols = original(cut)
        cols["frequency_orders"] = np.full(len(cut.codes), 2**40, dtype=np.int64)
        return cols

    monkeypatch.setattr(rfm, "columns", too_big)
    dtype = dict((i.name, i.dtype) for i in feature_catalog(default_spec()))["frequency_orders"]
    if np.dtype(dtype).itemsize >= 8:
        pytest.skip("frequency_orders is 64-bit in this catalogue")
    with pytest.raises(FeaturesError, match="frequency_orders"):
        cutoff_columns(prepared, AS_OF, default_spec())
