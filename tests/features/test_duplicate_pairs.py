"""Exact duplicates looked for only among rows sharing a (customer, time) pair: the same
verdicts as comparing every row, for any mix of repeats, stored events and dedupe mode."""

from __future__ import annotations

import concurrent.futures
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import features.validation as validation
from features import FactsConfig
from features.io import read_table
from features.schema import EVENT_COLUMNS, arrow_table
from features.validation import shared_pairs, validate_events

NOW = pd.Timestamp("2021-06-01T00:00:00Z")
HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": pd.Series(["c1", "c2", "c3"], dtype="string"),
        "signup_at": pd.Series(pd.to_datetime(["2021-01-01"] * 3, utc=True)).astype(
            "datetime64[us, UTC]"
        ),
    }
)
# Few customers, times, amounts and order ids: repeats of every kind are frequent.
ROW = st.tuples(
    st.sampled_from(["c1", "c2", "c3"]),
    st.sampled_from(["2021-01-02T10:00:00Z", "2021-01-02T10:00:00.000001Z", "2021-01-03"]),
    st.sampled_from(["purchase", "browse"]),
    st.sampled_from(["5", "7.5"]),
    st.sampled_from(["", "o1", "o2"]),
)


def _line(row: tuple[str, ...]) -> str:
    customer, when, kind, amount, order = row
    return f"{customer},{when},{kind},{amount},books,p1,{order},1\n"


def _stored(rows: list[tuple[str, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "occurred_at": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "event_type": [r[2] for r in rows],
            "amount": [float(r[3]) for r in rows],
            "category": "books",
            "product_id": "p1",
            "order_id": [r[4] or None for r in rows],
            "quantity": 1.0,
        },
        columns=list(EVENT_COLUMNS),
    )
    return frame.astype(
        {
            "customer_id": "string",
            "occurred_at": "datetime64[us, UTC]",
            "event_type": "string",
            "category": "string",
            "product_id": "string",
            "order_id": "string",
        }
    )


def _verdicts(tmp_path: Path, new: list[tuple[str, ...]], stored: Any, dedupe: Any) -> Any:
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "".join(_line(r) for r in new))
    result = validate_events(
        [read_table(path)],
        config=FactsConfig(),
        now=NOW,
        customers=CUSTOMERS,
        stored_events=stored,
        dedupe=dedupe,
    )
    return (
        result.accepted.to_dict("list"),
        result.quarantine[["line_number", "reason", "message"]].to_dict("list"),
        result.identical_kept,
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    new=st.lists(ROW, min_size=1, max_size=12),
    stored=st.lists(ROW, max_size=5),
    dedupe=st.sampled_from(["auto", "exact"]),
    as_lookup=st.booleans(),
)
def test_filtering_by_pair_changes_no_verdict(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new: list[tuple[str, ...]],
    stored: list[tuple[str, ...]],
    dedupe: str,
    as_lookup: bool,
) -> None:
    # Rows sharing no pair with another new row must still be accepted: at least one
    # distinct row per file keeps a file of repeats from being all-rejected.
    new = [*new, ("c1", "2021-01-04", "browse", "5", "")]
    frame = _stored(stored)

    def lookup(keys: pa.Table) -> pd.DataFrame:
        assert keys.column_names == ["customer_id", "occurred_at"]
        return frame

    stored_events: Any = lookup if as_lookup else (frame if len(frame) else None)
    filtered = _verdicts(tmp_path, new, stored_events, dedupe)
    monkeypatch.setattr(validation, "PAIR_FILTER_BELOW_ROWS", 0)  # every row compared
    assert _verdicts(tmp_path, new, stored_events, dedupe) == filtered


def _brute_force(rows: pd.DataFrame, stored: pd.DataFrame | None) -> np.ndarray:
    def key(customer: Any, when: Any) -> tuple[Any, Any]:
        return (None if pd.isna(customer) else str(customer), None if pd.isna(when) else when)

    new_keys = [key(c, t) for c, t in zip(rows["customer_id"], rows["occurred_at"], strict=True)]
    stored_keys = (
        []
        if stored is None
        else [key(c, t) for c, t in zip(stored["customer_id"], stored["occurred_at"], strict=True)]
    )
    every = new_keys + stored_keys
    return np.array([every.count(k) > 1 for k in new_keys], dtype=bool)


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    new=st.lists(ROW, max_size=10),
    stored=st.lists(ROW, max_size=5),
    as_table=st.booleans(),
)
def test_shared_pairs_marks_the_rows_whose_pair_is_elsewhere(
    new: list[tuple[str, ...]], stored: list[tuple[str, ...]], as_table: bool
) -> None:
    rows = _stored(new)
    other = _stored(stored) if stored else None
    given_stored = arrow_table(other) if as_table and other is not None else other
    assert shared_pairs(rows, given_stored).tolist() == _brute_force(rows, other).tolist()


def test_shared_pairs_tells_times_a_microsecond_apart() -> None:
    rows = _stored(
        [
            ("c1", "2021-01-02T10:00:00Z", "browse", "5", ""),
            ("c1", "2021-01-02T10:00:00.000001Z", "browse", "5", ""),
            ("c2", "2021-01-02T10:00:00Z", "browse", "5", ""),
        ]
    )
    assert shared_pairs(rows, None).tolist() == [False, False, False]
    assert shared_pairs(rows, rows.iloc[[1]]).tolist() == [False, True, False]


def test_a_small_frame_converts_without_a_thread_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a thread pool was started for a few hundred rows")

    # pyarrow looks the pool up on concurrent.futures at each conversion.
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", refuse)
    times = itertools.cycle(pd.date_range("2021-01-01", periods=7, freq="h", tz="UTC"))
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([f"c{i}" for i in range(800)], dtype="string"),
            "occurred_at": [next(times) for _ in range(800)],
        }
    )
    assert arrow_table(frame).num_rows == 800


def test_the_quarantine_keeps_its_column_types(tmp_path: Path) -> None:
    # One malformed row, one rejected row: both the concatenated and the typed paths.
    path = tmp_path / "events.csv"
    path.write_text(HEADER + _line(("c1", "2021-01-03", "browse", "5", "")) + "c1,,browse\nc9\n")
    result = validate_events([read_table(path)], config=FactsConfig(), now=NOW, customers=CUSTOMERS)
    assert len(result.quarantine) == 2
    types = {c: str(t) for c, t in result.quarantine.dtypes.items()}
    assert types == {
        "source_file": "str",
        "line_number": "int64",
        "reason": "str",
        "message": "str",
        "original_line": types["original_line"],  # not converted (object or str)
    }
