"""The rows a live write hands its listeners (``streaming.pipeline.written_rows``):
built from the appended Arrow table (``LiveWrite.table``) they equal the rows built
from the grid's arrays, and the table's ids are the grid's, customer-major."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streaming.pipeline import written_rows
from tags.errors import TagStoreError
from tags.live import LIVE_COLUMNS, LiveGrid


def _grid(customers: list[str], tags: list[str]) -> LiveGrid:
    n = len(customers) * len(tags)
    rng = np.random.default_rng(len(customers))
    value = np.array(["low", "high", None, "é"], dtype=object)[rng.integers(0, 4, n)]
    score = np.where(rng.random(n) < 0.3, np.nan, rng.random(n))
    return LiveGrid(
        customers=customers,
        tags=tags,
        value=value,
        score=score,
        source=np.array(["rule", "model"], dtype=object)[rng.integers(0, 2, n)],
        version=np.array(["", "m/1", "v2"], dtype=object)[rng.integers(0, 3, n)],
        as_of=np.full(n, np.datetime64("2026-12-07T10:00:00", "us")),
    )


@pytest.mark.parametrize("n_customers", [0, 1, 7])
def test_rows_from_the_table_equal_rows_from_the_grid(n_customers: int) -> None:
    grid = _grid([f"c{k}" for k in range(n_customers)], ["a", "b", "lifecycle_stage"])
    at = pd.Timestamp("2026-12-07 10:00:01.5", tz="UTC")
    table = grid.table(at=at.tz_localize(None).to_pydatetime(), seq=9)
    assert table.column_names == list(LIVE_COLUMNS)
    assert table["customer_id"].to_pylist() == list(np.repeat(grid.customers, len(grid.tags)))
    assert table["tag_id"].to_pylist() == grid.tags * n_customers
    assert table["value"].to_pylist() == grid.value.tolist()
    assert table["seq"].to_pylist() == [9] * len(grid.value)
    pd.testing.assert_frame_equal(
        written_rows(grid, at=at, seq=9, table=table), written_rows(grid, at=at, seq=9)
    )


def test_a_table_of_other_rows_is_refused() -> None:
    grid = _grid(["c1", "c2"], ["a", "b"])
    other = _grid(["c1"], ["a", "b"]).table(at=pd.Timestamp("2026-12-07").to_pydatetime(), seq=1)
    with pytest.raises(TagStoreError, match=r"Expected the 4 rows of the grid written\. Got 2\."):
        written_rows(grid, at=pd.Timestamp("2026-12-07", tz="UTC"), seq=1, table=other)
