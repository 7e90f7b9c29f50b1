"""The import's fast paths agree with the slow, obvious ones on random inputs.

* Unquoted delimited files are split by Arrow's CSV parser (``features.io._split_arrow``);
  the line-by-line split (``_split_plain``) is the oracle: same columns, values, line
  numbers, texts and malformed rows, whatever the blank lines, padding, CRLF endings or
  wrong-width lines.
* Exact duplicates are found through a hash prefilter (``features.checks.repeat_rows``);
  the oracle is a Python loop over the rows (missing equals missing, ``keep_repeats``
  rows counted as a multiset against the store).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import checks
from features import io as fio
from features.checks import repeat_rows
from features.io import ReadOptions, read_table

_FIELD = st.text(alphabet="ab1 .-:", max_size=4)


def _line(width: int) -> st.SearchStrategy[str]:
    return st.lists(_FIELD, min_size=width, max_size=width)


@st.composite
def _csv(draw: st.DrawFn) -> tuple[str, str]:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    rows = draw(
        st.lists(
            st.one_of(_line(3), _line(3), _line(3), _line(2), _line(4), st.just(None)),
            min_size=1,
            max_size=25,
        )
    )
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["a" + delimiter + "b" + delimiter + "c"]
    lines += ["   " if r is None else delimiter.join(r) for r in rows]
    return delimiter, ending.join(lines) + draw(st.sampled_from(["", ending]))


def _read(path: Path, delimiter: Any, *, fast: bool) -> fio.RawTable | str:
    options = ReadOptions(delimiter=delimiter, header=True)
    patch = (
        mock.patch.object(fio, "_split_arrow", return_value=None)
        if not fast
        else mock.patch.object(fio, "_split_arrow", wraps=fio._split_arrow)
    )
    with patch:
        try:
            return read_table(path, options)
        except fio.FactFileError as exc:
            return str(exc)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_csv())
def test_arrow_split_equals_line_split(tmp_path: Path, case: tuple[str, str]) -> None:
    delimiter, text = case
    path = tmp_path / "events.csv"
    path.write_bytes(text.encode("utf-8"))
    fast, slow = _read(path, delimiter, fast=True), _read(path, delimiter, fast=False)
    if isinstance(slow, str):
        assert fast == slow
        return
    assert isinstance(fast, fio.RawTable)
    assert fast.columns == slow.columns
    pd.testing.assert_frame_equal(fast.data, slow.data)
    assert fast.line_number.tolist() == slow.line_number.tolist()
    assert fast.text.tolist() == slow.text.tolist()
    pd.testing.assert_frame_equal(fast.malformed, slow.malformed)


def test_arrow_split_is_used_for_clean_files(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text('"customer_id","amount"\nC1, 2.5\nC2,\n', encoding="utf-8")
    with mock.patch.object(fio, "_split_plain", side_effect=AssertionError("slow path")):
        raw = read_table(path, ReadOptions(known_names=frozenset({"customer_id"})))
    assert raw.data["customer_id"].tolist() == ["C1", "C2"]
    assert raw.data["amount"].isna().tolist() == [False, True]
    assert raw.data["amount"].iloc[0] == "2.5"
    assert raw.line_number.tolist() == [2, 3]
    assert raw.text.tolist() == ["C1, 2.5", "C2,"]


def _naive_repeats(
    rows: list[tuple[Any, ...]], stored: list[tuple[Any, ...]], keep: list[bool]
) -> tuple[list[bool], list[bool], list[bool]]:
    def norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(None if pd.isna(v) else v for v in row)

    in_stock = Counter(norm(r) for r in stored)
    seen: Counter[tuple[Any, ...]] = Counter()
    repeats, in_store, kept = [], [], []
    for row, k in zip(rows, keep, strict=True):
        key = norm(row)
        seen[key] += 1
        rank = seen[key]
        repeats.append(rank > 1 and not k)
        stored_dup = key in in_stock and (not k or rank <= in_stock[key])
        in_store.append(stored_dup)
        kept.append(rank > 1 and k and not stored_dup)
    return repeats, in_store, kept


_ROW = st.tuples(
    st.sampled_from(["C1", "C2", None]),
    st.sampled_from([1.0, 2.5, float("nan")]),
    st.sampled_from(["x", None]),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_ROW, min_size=1, max_size=30),
    stored=st.lists(_ROW, max_size=10),
    data=st.data(),
)
def test_hashed_repeats_equal_naive_loop(
    rows: list[tuple[Any, ...]], stored: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    columns = ["customer_id", "amount", "order_id"]

    def frame(values: list[tuple[Any, ...]]) -> pd.DataFrame:
        raw = pd.DataFrame(values, columns=columns) if values else pd.DataFrame(columns=columns)
        return raw.astype({"customer_id": "string", "amount": "float64", "order_id": "string"})

    expected = [list(e) for e in _naive_repeats(rows, stored, keep)]
    # Hashed first, one ranking of every row (both in DuckDB), and a small batch's
    # count of Python tuples.
    for prefilter_from, python_below in ((0, 0), (10**9, 0), (10**9, 10**9)):
        got = repeat_rows(
            frame(rows),
            columns,
            frame(stored) if stored else None,
            keep_repeats=np.array(keep),
            prefilter_from=prefilter_from,
            python_below=python_below,
        )
        assert [g.tolist() for g in got] == expected


@pytest.mark.parametrize("python_below", [0, 10**9])
@pytest.mark.parametrize("unit", ["us", "ns"])
def test_stored_rows_of_another_time_unit_are_still_duplicates(
    unit: str, python_below: int
) -> None:
    times = pd.Series(pd.to_datetime(["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z"]))
    new = pd.DataFrame(
        {"customer_id": ["C1", "C2"], "occurred_at": times.astype("datetime64[us, UTC]")}
    )
    stored = new.iloc[:1].astype({"occurred_at": f"datetime64[{unit}, UTC]"})
    repeats, in_store, _ = repeat_rows(
        new, ["customer_id", "occurred_at"], stored, prefilter_from=0, python_below=python_below
    )
    assert in_store.tolist() == [True, False]
    assert repeats.tolist() == [False, False]


_ISO = st.builds(
    lambda y, mo, d, sep, h, mi, sec, frac, zone: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}{sec}{frac}{zone}"
    ),
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", " ", "t"]),
    st.integers(0, 25),
    st.integers(0, 61),
    st.sampled_from(["", ":00", ":59", ":60", ":7"]),
    st.sampled_from(["", ".5", ".123456", ".1234567", ".123456789"]),
    st.sampled_from(["Z", "", "+08:00", "-0530", "+14:00", "+2400", "z", " Z"]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(_ISO, st.none()), min_size=1, max_size=6))
def test_arrow_times_equal_pandas_times(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    expected = pd.Series(
        pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)
    ).astype("datetime64[us, UTC]")
    fast = checks._arrow_iso_times(series)
    if fast is not None:
        pd.testing.assert_series_equal(fast, expected, check_names=False)
    pd.testing.assert_series_equal(
        checks.parse_timestamps(series, None), expected, check_names=False
    )


_NUMBERISH = st.one_of(
    st.text(alphabet="0123456789.+-eE", max_size=25),
    st.from_regex(r"\A[+-]?\d{1,25}(\.\d{0,25})?([eE][+-]?\d{1,3})?\Z"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-Infinity", "1,5", " 2", "0x10", "1_000", "", "nan", "1e400"]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(_NUMBERISH, st.none()), min_size=1, max_size=8))
def test_arrow_numbers_equal_pandas_numbers(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    expected = pd.to_numeric(series, errors="coerce").astype("float64")
    pd.testing.assert_series_equal(checks.to_float(series), expected, check_names=False)


_HOSTILE = st.one_of(
    _NUMBERISH,
    st.sampled_from([*sorted(checks.NULL_NUMBER_TOKENS), "NaN", "N/A", "NULL", "None", "-"]),
    st.text(alphabet="0123456789.+-eE \t/\\naé١٢", max_size=12),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(_HOSTILE, st.none()), min_size=1, max_size=12),
    skip=st.integers(min_value=0, max_value=3),
)
def test_number_shaped_fast_path_equals_the_regex_path(values: list[str | None], skip: int) -> None:
    # A slice: the Arrow text then starts at an offset into its buffers.
    series = pd.Series(["0", "x", None, "1e5"][:skip] + values, dtype="str").iloc[skip:]
    shaped = checks._number_shaped(series)
    assert shaped is not None
    pd.testing.assert_series_equal(
        checks._null_tokens_to_na(series, shaped), checks._null_tokens_to_na(series)
    )
    masked = checks._null_tokens_to_na(series)
    pd.testing.assert_series_equal(
        checks.to_float(masked, shaped), checks._regex_to_float(masked), check_names=False
    )
    pd.testing.assert_series_equal(
        checks.to_float(series),
        pd.to_numeric(series, errors="coerce").astype("float64"),
        check_names=False,
    )
    # Shaped: present, not empty, of number bytes only.
    want = [v is not None and v != "" and set(v) <= set("0123456789.eE+-") for v in values]
    assert shaped.tolist() == want


def test_numbers_field_reasons_with_the_fast_cast() -> None:
    from features.quarantine import Rejects
    from features.schema import ReasonCode

    values = pd.Series(
        ["1.5", "n/a?", "-2", None, "NaN", "3e400", "", "7", "1e", "null"], dtype="str"
    )
    rejects = Rejects(len(values))
    got = checks.numbers_field(
        rejects,
        values,
        field_name="amount",
        bad_reason=ReasonCode.BAD_AMOUNT,
        negative_reason=ReasonCode.NEGATIVE_AMOUNT,
    )
    assert got.iloc[[0, 2, 7]].tolist() == [1.5, -2.0, 7.0]
    assert got.iloc[[1, 3, 4, 6, 8, 9]].isna().all()
    assert np.isinf(got.iloc[5])
    # Rejected: "n/a?", "-2" (negative), "3e400", "" and "1e"; blank, NaN and null are missing.
    assert (~rejects.ok).nonzero()[0].tolist() == [1, 2, 5, 6, 8]


_IDISH = st.one_of(
    st.sampled_from([*sorted(checks.NULL_ID_TOKENS), "NULL", "N/A", "Undefined", "<NA>", "NIL"]),
    st.text(alphabet="nN-<uU\\/aLlDdeEfFiI0123\u212a\u0130é ", max_size=10),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(_IDISH, st.none()), min_size=1, max_size=12),
    skip=st.integers(min_value=0, max_value=2),
)
def test_null_id_marker_prefilter_equals_lowercasing_every_id(
    values: list[str | None], skip: int
) -> None:
    series = pd.Series(["x", "null"][:skip] + values, dtype="str").iloc[skip:]
    want = series.str.lower().isin(list(checks.NULL_ID_TOKENS)).fillna(False).to_numpy(bool)
    assert checks._null_id_markers(series).tolist() == want.tolist()


@settings(max_examples=200, deadline=None)
@given(
    marks=st.lists(
        st.tuples(st.lists(st.booleans(), min_size=9, max_size=9), st.booleans()), max_size=5
    ),
    wanted=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_rejects_keep_the_first_reason_and_message_of_each_row(
    marks: list[tuple[list[bool], bool]], wanted: list[bool]
) -> None:
    from features.quarantine import Rejects
    from features.schema import ReasonCode

    codes = list(ReasonCode)
    rejects = Rejects(9)
    want_reason, want_message = [""] * 9, [""] * 9
    for k, (mask, one_text) in enumerate(marks):
        code = codes[k]
        for i in range(9):
            if mask[i] and not want_reason[i]:
                want_reason[i], want_message[i] = code.value, ("all" if one_text else f"{k}:{i}")
        rejects.mark(
            np.array(mask),
            code,
            (lambda hit: "all")
            if one_text
            else (lambda hit, k=k: np.array([f"{k}:{i}" for i in np.flatnonzero(hit)])),
        )
    assert rejects.ok.tolist() == [not r for r in want_reason]
    assert rejects.reason.tolist() == want_reason
    assert rejects.message.tolist() == want_message
    at = np.array(wanted)
    assert rejects.reasons_at(at).tolist() == [
        r for r, w in zip(want_reason, wanted, strict=True) if w
    ]
    assert rejects.messages_at(at).tolist() == [
        m for m, w in zip(want_message, wanted, strict=True) if w
    ]
