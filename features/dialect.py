"""A text file's dialect: its delimiter and header sniffed, quoted line breaks joined.

Pure functions over a sample of lines (or an Arrow array of them) used by
:func:`features.io.read_table`; no file access.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "SNIFF_LINES",
    "join_quoted_newlines",
    "modal_width",
    "open_record_start",
    "sniff_delimiter",
    "sniff_header",
    "split_sample",
]

# Lines read to guess the delimiter and the header.
SNIFF_LINES = 200
_DELIMITERS: tuple[str, ...] = (",", "\t", ";", "|")
# A quoted field may hold line breaks; one record spans at most this many lines.
_MAX_RECORD_LINES = 50
# Stand-ins for a line break inside a quoted field while records are one line each.
_PLACEHOLDERS = ("\x00", "\x1e", "\ue000", "\U0010fffd")
_NUMBER_OR_DATE = re.compile(
    r"^\s*[+-]?(\d+([.,]\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"  # numbers
    r"|^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T].*)?$"  # dates
)


def join_quoted_newlines(
    lines: pa.Array, numbers: np.ndarray, delimiter: str, width: int
) -> tuple[pa.Array, np.ndarray, str | None]:
    """Join the physical lines of records whose quoted field holds a line break.

    A line with an odd number of double quotes opens a quoted field that the next
    such line closes. The two and the lines between are one record when they are at
    most :data:`_MAX_RECORD_LINES` lines and parse as exactly ``width`` fields; else the
    opening line stays alone (and is quarantined as an unbalanced quote), so one stray
    quote never swallows the lines after it. Joined records keep their first line's
    number; their line breaks are held as a placeholder character absent from the
    file (the caller turns it back into ``"\\n"``) so each record stays one line.

    Returns:
        (lines, line numbers, the placeholder or ``None`` when nothing was joined).
    """
    joins, _ = _quoted_records(lines, delimiter, width)
    if not joins:
        return lines, numbers, None
    placeholder = next(
        (c for c in _PLACEHOLDERS if not pc.any(pc.match_substring(lines, c)).as_py()), None
    )
    if placeholder is None:  # every candidate character occurs in the file: join nothing
        return lines, numbers, None
    keep = np.ones(len(lines), dtype=bool)
    texts = lines.to_pylist() if len(joins) > len(lines) // 100 else None
    replaced: dict[int, str] = {}
    for start, end in joins:
        parts = (
            texts[start : end + 1]
            if texts is not None
            else lines.slice(start, end - start + 1).to_pylist()
        )
        replaced[start] = placeholder.join(parts)
        keep[start + 1 : end + 1] = False
    mask = np.zeros(len(lines), dtype=bool)
    mask[list(replaced)] = True
    joined = pc.replace_with_mask(
        lines, pa.array(mask), pa.array([replaced[k] for k in sorted(replaced)], lines.type)
    )
    return joined.filter(pa.array(keep)), numbers[keep], placeholder


def _quoted_records(
    lines: pa.Array, delimiter: str, width: int
) -> tuple[list[tuple[int, int]], int | None]:
    """Pairs of lines (first, last) that open and close a quoted field, paired left to
    right, and the last line that opens one and is left unpaired (``None`` if none)."""
    odd = np.flatnonzero(pc.count_substring(lines, '"').to_numpy(zero_copy_only=False) % 2 == 1)
    joins: list[tuple[int, int]] = []
    i = 0
    while i + 1 < len(odd):
        start, end = int(odd[i]), int(odd[i + 1])
        if end - start < _MAX_RECORD_LINES:
            record = "\n".join(lines.slice(start, end - start + 1).to_pylist())
            if _fields_in(record, delimiter) == width:
                joins.append((start, end))
                i += 2
                continue
        i += 1
    return joins, int(odd[i]) if i < len(odd) else None


def open_record_start(lines: pa.Array, delimiter: str, width: int) -> int | None:
    """Where a record may continue past the end of ``lines`` (a block of a file read in
    pieces): the index of the last line that opens a quoted field left unpaired, when it
    is close enough to the end to pair with a line of the next block; else ``None``.

    Reading from that line on together with the next block pairs quoted line breaks
    exactly as reading the whole file at once does (pairing runs left to right).
    """
    if delimiter == "whitespace" or not pc.any(pc.match_substring(lines, '"')).as_py():
        return None
    _, last = _quoted_records(lines, delimiter, width)
    if last is None or len(lines) - last >= _MAX_RECORD_LINES:
        return None
    return last


def _fields_in(record: str, delimiter: str) -> int:
    """Fields of ``record`` as a strict CSV parser splits it (-1: not exactly one
    well-formed record, e.g. text after a closing quote)."""
    try:
        rows = list(csv.reader(io.StringIO(record, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return -1
    return len(rows[0]) if len(rows) == 1 else -1


def split_sample(lines: list[str], delimiter: str) -> list[list[str]]:
    if delimiter == "whitespace":
        return [line.split() for line in lines]
    return [line.split(delimiter) for line in lines]


def sniff_delimiter(sample: list[str]) -> str:
    best: tuple[int, int, str] | None = None
    for candidate in _DELIMITERS:
        counts = [line.count(candidate) for line in sample]
        if not counts or max(counts) == 0:
            continue
        modal = max(set(counts), key=counts.count)
        agreeing = counts.count(modal)
        if modal == 0:
            continue
        key = (agreeing, modal, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is not None:
        return best[2]
    if any(len(line.split()) > 1 for line in sample):
        return "whitespace"
    return ","


def modal_width(rows: list[list[str]]) -> int:
    widths = [len(r) for r in rows]
    return max(set(widths), key=widths.count)


def _looks_like_value(text: str) -> bool:
    return bool(_NUMBER_OR_DATE.match(text.strip().strip('"')))


def sniff_header(first: list[str], rest: list[list[str]], known_names: Collection[str]) -> bool:
    cleaned = [f.strip().strip('"').strip() for f in first]
    if any(c in known_names or c.lower() in known_names for c in cleaned):
        return True
    if any(not c or _looks_like_value(c) for c in cleaned):
        return False
    # All first-line fields are words: a header if some column below holds values.
    for i in range(len(cleaned)):
        column = [row[i] for row in rest if len(row) == len(cleaned)]
        if column and sum(_looks_like_value(v) for v in column) >= 0.8 * len(column):
            return True
    return False
