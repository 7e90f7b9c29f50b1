"""Splitting a text file's lines into fields: Arrow's CSV parser where it can, compute
kernels where lines do not split evenly, and the quoted parser (lines with unbalanced
quotes set aside first) for files that quote fields. Pure functions over Arrow arrays
of lines, used by :mod:`features.io`; no file access.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

__all__ = ["empty_malformed", "split_arrow", "split_plain", "split_quoted"]

_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def empty_malformed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_number": pd.Series([], dtype="int64"),
            "text": pd.Series([], dtype="str"),
            "message": pd.Series([], dtype="str"),
        }
    )


def _malformed_frame(
    lines: pa.Array, numbers: np.ndarray, bad: np.ndarray, message: pa.Array | str
) -> pd.DataFrame:
    text = pd.Series(lines.filter(pa.array(bad)), dtype="str")
    if isinstance(message, str):
        messages = pd.Series([message] * int(bad.sum()), dtype="str")
    else:
        messages = pd.Series(message, dtype="str")
    return pd.DataFrame(
        {"line_number": numbers[bad], "text": text.values, "message": messages.values}
    )


def split_arrow(
    lines: pa.Array,
    delimiter: str,
    columns: tuple[str, ...],
    *,
    plain: bool = False,
    joined: pa.Buffer | None = None,
) -> pd.DataFrame | None:
    """Fields of unquoted lines through Arrow's multithreaded CSV parser (several times
    faster than splitting with compute kernels); ``None`` when some line does not split
    into exactly one row of ``len(columns)`` fields, so the caller's line-by-line split
    can report it as malformed with its line number. ``plain``: the lines hold no
    whitespace at all, so no field needs trimming and empty ones are read as null.
    ``joined``: the lines joined by line feeds, when the caller holds those bytes
    already (a block read from a file: joining the lines again copies the block)."""
    if joined is None:
        joined = pc.binary_join(
            pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()), lines),
            pa.scalar("\n", pa.large_string()),
        )[0].as_buffer()
    names = [f"f{i}" for i in range(len(columns))]
    invalid = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pcsv.read_csv(
            pa.BufferReader(joined if joined is not None else pa.py_buffer(b"")),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=True),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=plain,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid:
        return None
    # A lone carriage return is a line break to Arrow, not to the line split: compare.
    if invalid or table.num_rows != len(lines):
        return None
    clean = (lambda c: c) if plain else _blank_to_null
    return pd.DataFrame(
        {
            name: pd.Series(clean(table.column(f"f{i}")), dtype="str")
            for i, name in enumerate(columns)
        }
    )


def split_plain(
    lines: pa.Array, numbers: np.ndarray, delimiter: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    if delimiter == "whitespace":
        fields = pc.split_pattern_regex(pc.utf8_trim_whitespace(lines), r"\s+")
    else:
        fields = pc.split_pattern(lines, delimiter)
    widths = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    good = widths == len(columns)
    bad = ~good
    malformed = empty_malformed()
    if bad.any():
        got = pa.array(widths[bad].astype(str))
        message = pc.binary_join_element_wise(
            f"expected {len(columns)} fields separated by "
            f"{_DELIMITER_NAMES.get(delimiter, delimiter)}; got ",
            got,
            "",
        )
        malformed = _malformed_frame(lines, numbers, bad, message)
    kept = fields if good.all() else fields.filter(pa.array(good))
    del fields
    frame = pd.DataFrame(
        {
            name: pd.Series(_blank_to_null(pc.list_element(kept, i)), dtype="str")
            for i, name in enumerate(columns)
        }
    )
    return frame, good, malformed


def split_quoted(
    lines: pa.Array, numbers: np.ndarray, delimiter: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    # An odd number of quotes would make the CSV parser read on into the next lines.
    balanced = (pc.count_substring(lines, '"').to_numpy(zero_copy_only=False) % 2) == 0
    candidates = lines.filter(pa.array(balanced))
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, len(candidates)], pa.int64()), candidates),
        pa.scalar("\n", pa.large_string()),
    )[0].as_buffer()
    names = [f"f{i}" for i in range(len(columns))]
    invalid: dict[int, int] = {}

    def on_invalid(row: Any) -> str:
        # Row numbers are only known single-threaded; -1 marks "some row was invalid".
        invalid[-1 if row.number is None else int(row.number)] = int(row.actual_columns)
        return "skip"

    def parse(threads: bool) -> pa.Table:
        return pcsv.read_csv(
            pa.BufferReader(joined if joined is not None else pa.py_buffer(b"")),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=threads),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    if not len(candidates):
        table = pa.table({n: pa.array([], pa.large_string()) for n in names})
    else:
        table = parse(threads=True)
    if invalid:  # rare: parse again on one thread to learn which lines were skipped
        invalid.clear()
        table = parse(threads=False)
    parsed = np.ones(len(candidates), dtype=bool)
    if invalid:
        parsed[np.fromiter(invalid.keys(), dtype=np.int64) - 1] = False
    good = balanced.copy()
    good[np.flatnonzero(balanced)[~parsed]] = False
    malformed_parts = []
    if (~balanced).any():
        malformed_parts.append(
            _malformed_frame(lines, numbers, ~balanced, "unbalanced double quote")
        )
    wrong_width = balanced & ~good
    if wrong_width.any():
        widths = [invalid[int(i) + 1] for i in np.flatnonzero(~parsed)]
        message = pa.array(
            [
                f"expected {len(columns)} fields separated by "
                f"{_DELIMITER_NAMES.get(delimiter, delimiter)}; got {w}"
                for w in widths
            ]
        )
        malformed_parts.append(_malformed_frame(lines, numbers, wrong_width, message))
    malformed = (
        pd.concat(malformed_parts, ignore_index=True).sort_values("line_number", ignore_index=True)
        if malformed_parts
        else empty_malformed()
    )
    frame = pd.DataFrame(
        {
            name: pd.Series(_blank_to_null(table.column(f"f{i}")), dtype="str")
            for i, name in enumerate(columns)
        }
    )
    return frame, good, malformed


def _blank_to_null(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Trim fields; empty ones become null so every check treats them as missing."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
