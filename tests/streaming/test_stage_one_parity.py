"""Stage 1's array helpers give what the frame code they replaced gave (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.checking import _first_conflict
from streaming.pipeline import touched
from streaming.records import raw_events

TIMES = pd.to_datetime(
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000001Z", "2026-01-02T00:00:00Z"],
    utc=True,
    format="ISO8601",
).astype("datetime64[us, UTC]")


def _conflict_by_groups(
    customers: list[set[str]],
    accepted_customer: pd.Series,
    accepted_at: pd.Series,
    accepted_batch: np.ndarray,
    duplicates: list[tuple[int, str]],
) -> int | None:
    """The frame version _first_conflict had (a duplicated() and a group per pair)."""
    first: int | None = None
    if len(accepted_batch) > 1:
        keys = pd.DataFrame(
            {
                "c": accepted_customer.astype(str).to_numpy(),
                "t": accepted_at.dt.tz_convert(None).to_numpy(),
                "b": accepted_batch,
            }
        )
        shared = keys[keys.duplicated(["c", "t"], keep=False)]
        for _, batches in shared.groupby(["c", "t"], sort=False)["b"]:
            distinct = np.unique(batches.to_numpy())
            if len(distinct) > 1:
                later = int(distinct[1])
                first = later if first is None else min(first, later)
    for batch, customer in duplicates:
        others = [k for k, named in enumerate(customers) if k != batch and customer in named]
        if others:
            later = batch if min(others) < batch else min(others)
            first = later if first is None else min(first, later)
    return first


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.integers(0, 4)),
        max_size=14,
    ),
    duplicates=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["a", "b", "z"])), max_size=3),
)
def test_first_conflict_over_arrays_equals_the_frame_version(
    rows: list[tuple[str, int, int]], duplicates: list[tuple[int, str]]
) -> None:
    rows.sort(key=lambda r: r[2])  # accepted rows come batch after batch
    customer = pd.Series([r[0] for r in rows], dtype="string")
    at = pd.Series(TIMES[[r[1] for r in rows]])
    batch = np.asarray([r[2] for r in rows], dtype=np.int64)
    named = [{r[0] for r in rows if r[2] == k} | {"z"} for k in range(5)]
    assert _first_conflict(named, customer, at, batch, duplicates) == _conflict_by_groups(
        named, customer, at, batch, duplicates
    )


@dataclass
class _Checked:
    accepted: pd.DataFrame
    ids: list[str]
    repeats: list[Any] = field(default_factory=list)


@settings(deadline=None)  # a loaded machine must not fail it
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(["a", "b", "c", "gone"]), st.booleans())),
            st.lists(st.sampled_from(["a", "c", "gone"]), max_size=2),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_touched_equals_looking_each_batch_up_in_its_frame(
    batches: list[tuple[list[tuple[str, bool]], list[str]]],
) -> None:
    stored = {"a", "b", "c"}

    def known(ids: Any) -> list[str]:
        out: dict[str, None] = {}
        for cid in ids:
            if cid in stored:
                out.setdefault(cid, None)
        return list(out)

    checked = [
        _Checked(
            accepted=pd.DataFrame({"customer_id": pd.Series([c for c, _ in rows], dtype="string")}),
            ids=[f"e{k}" for k in range(len(rows))],
            repeats=[{"customer_id": r} for r in repeats],
        )
        for rows, repeats in batches
    ]
    written = [w for rows, _ in batches for _, w in rows]
    accepted = pd.concat([c.accepted for c in checked], ignore_index=True)
    customers, own = touched(known, checked, accepted["customer_id"].tolist(), written)
    # What _store computed before: a mask and a frame lookup per batch.
    mask = np.asarray(written, dtype=bool)
    expected = known(
        [str(c) for c in accepted["customer_id"][mask]]
        + [str(r.get("customer_id")) for c in checked for r in c.repeats]
    )
    expected_own, offset = [expected], 0
    if len(checked) > 1:
        expected_own = []
        for c in checked:
            mine = mask[offset : offset + len(c.ids)]
            offset += len(c.ids)
            expected_own.append(
                known(
                    [str(x) for x in c.accepted.loc[mine, "customer_id"]]
                    + [str(r.get("customer_id")) for r in c.repeats]
                )
            )
    assert (customers, own) == (expected, expected_own)


VALUE = st.one_of(
    st.none(),
    st.sampled_from(["", "  ", "x", "42.5", "café"]),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.booleans(),
    st.lists(st.integers(0, 2), max_size=2),
)
FIELD = st.sampled_from(["customer_id", "occurred_at", "event_type", "amount", "order_id"])


@settings(deadline=None)  # a loaded machine must not fail it
@given(records=st.lists(st.dictionaries(FIELD, VALUE, max_size=5), max_size=6))
def test_raw_event_columns_equal_building_each_column_from_its_values(
    records: list[dict[str, Any]],
) -> None:
    raw, _ = raw_events(records, "POST /events", texts=False)
    expected = pd.DataFrame(
        {c: pd.Series(raw.data[c].tolist(), dtype="str") for c in raw.data.columns}
    )
    assert list(raw.data.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(raw.data, expected)
    # A field no record names is all missing, still of the str dtype.
    assert raw.data["quantity"].isna().all()
    assert raw.data["quantity"].dtype == "str"
