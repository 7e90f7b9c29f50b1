"""Reading customers and events files as they come: CSV in its many dialects, Parquet.

Every value is read as text, so validation can quarantine a bad value together with
the original line it came from. Parsing is vectorised with pyarrow: a file is split
into lines and fields with Arrow compute kernels; only files that quote fields go
through Arrow's CSV parser, and only after lines with unbalanced quotes are set
aside, so that one bad quote cannot swallow the rest of the file.

Supported input:

* CSV separated by comma, tab, semicolon, ``|`` or runs of whitespace, with or
  without a header line (both sniffed; override with ``delimiter`` / ``header``);
* text in UTF-8, UTF-8 with BOM, UTF-16 with BOM or GBK (detected in that order);
* Parquet (any column types; values are rendered as text);
* a folder of such files (hidden files skipped), read one file at a time.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from features.dialect import (
    SNIFF_LINES,
    join_quoted_newlines,
    modal_width,
    sniff_delimiter,
    sniff_header,
    split_sample,
)
from features.errors import FactFileError

__all__ = [
    "DATA_SUFFIXES",
    "RawTable",
    "ReadOptions",
    "expand_paths",
    "file_sha256",
    "parse_mapping",
    "read_table",
]

DATA_SUFFIXES: frozenset[str] = frozenset(
    {".csv", ".tsv", ".txt", ".dat", ".psv", ".parquet", ".pq"}
)
Delimiter = Literal[",", "\t", ";", "|", "whitespace"]
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class ReadOptions:
    """How to read one kind of file (all ``None``: sniff).

    Attributes:
        delimiter: ``","``, ``"\\t"``, ``";"``, ``"|"`` or ``"whitespace"`` (runs of
            blanks); ``None`` sniffs it from the first lines.
        header: Whether the first line names the columns; ``None`` sniffs it.
        encoding: A Python codec name; ``None`` detects UTF-8 (BOM or not), UTF-16
            with BOM, then GBK.
        known_names: Column names that, seen in the first line, mark it as a header
            (the canonical names and the sources of ``--map``).
    """

    delimiter: Delimiter | None = None
    header: bool | None = None
    encoding: str | None = None
    known_names: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RawTable:
    """One file read as text, one row per data line.

    Attributes:
        path: The file read.
        columns: Column names: the header's, or ``"0"``, ``"1"``, ... without one.
        data: One text column per entry of ``columns`` (``NA`` where empty).
        line_number: 1-based physical line of each row of ``data`` (Parquet: row
            number + 1).
        text: The original line of each row (Parquet: values joined by commas).
        malformed: Lines that could not be split into ``len(columns)`` fields, with
            columns ``line_number``, ``text``, ``message``.
        encoding: The text encoding used (``"parquet"`` for Parquet).
        delimiter: The delimiter used, ``None`` for Parquet.
        has_header: Whether the first line was taken as a header.
        sha256: Hex digest of the file's bytes.
    """

    path: Path
    columns: tuple[str, ...]
    data: pd.DataFrame
    line_number: np.ndarray
    text: pd.Series
    malformed: pd.DataFrame
    encoding: str
    delimiter: str | None
    has_header: bool
    sha256: str

    @property
    def rows_read(self) -> int:
        """Data rows in the file: parsed rows plus malformed ones."""
        return len(self.data) + len(self.malformed)

    @property
    def dialect(self) -> str:
        """Human-readable description: format, delimiter, header, encoding."""
        if self.delimiter is None:
            return "parquet"
        name = _DELIMITER_NAMES.get(self.delimiter, self.delimiter)
        header = "header" if self.has_header else "no header"
        return f"csv ({name}, {header}, {self.encoding})"


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse ``target=source,target=source`` into a dict.

    Raises:
        FactFileError: An entry is not ``target=source`` or a target repeats.
    """
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for entry in text.split(","):
        target, sep, source = entry.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            raise FactFileError(
                f"Each --map entry must look like target=source (e.g. customer_id=0). "
                f"Got {entry.strip()!r} instead."
            )
        if target in mapping:
            raise FactFileError(f"--map names target {target!r} twice. Expected it once.")
        mapping[target] = source
    return mapping


def expand_paths(path: Path) -> list[Path]:
    """The data files ``path`` stands for: itself, or a folder's data files sorted by name.

    Raises:
        FactFileError: The path does not exist or a folder holds no data file.
    """
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_SUFFIXES
        )
        if not files:
            raise FactFileError(
                f"{path}: expected a folder holding data files "
                f"({', '.join(sorted(DATA_SUFFIXES))}). Got none."
            )
        return files
    if not path.is_file():
        raise FactFileError(f"{path}: expected an existing file or folder. Got no such path.")
    return [path]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: Path, options: ReadOptions | None = None) -> RawTable:
    """Read one CSV or Parquet file as text.

    Raises:
        FactFileError: The file is empty, undecodable, binary or not readable as the
            format it claims; the message names the file (and line when known).
    """
    options = options or ReadOptions()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FactFileError(f"{path}: cannot be read ({exc.strerror}).") from exc
    sha = hashlib.sha256(data).hexdigest()
    if data.startswith(_PARQUET_MAGIC) or path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path, data, sha)
    holder = [data]
    del data  # let _read_text drop the raw bytes once decoded (large files)
    return _read_text(path, holder, sha, options)


def _read_parquet(path: Path, data: bytes, sha: str) -> RawTable:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise FactFileError(
            f"{path}: expected a Parquet file (it is named or starts like one). "
            f"Got an unreadable file: {exc}"
        ) from exc
    if table.num_rows == 0:
        raise FactFileError(f"{path}: expected at least one row. Got an empty Parquet file.")
    columns = tuple(str(name) for name in table.column_names)
    texts = []
    for column in table.columns:
        try:
            as_text = pc.cast(column, pa.large_string())
        except pa.ArrowException as exc:
            raise FactFileError(
                f"{path}: column of type {column.type} cannot be read as text. "
                f"Expected scalar columns (text, numbers, dates). {exc}"
            ) from exc
        texts.append(as_text.combine_chunks() if isinstance(as_text, pa.ChunkedArray) else as_text)
    frame = pd.DataFrame(
        {name: pd.Series(arr, dtype="str") for name, arr in zip(columns, texts, strict=True)}
    )
    shown = [pc.fill_null(arr, "") for arr in texts]
    text = (
        pc.binary_join_element_wise(*shown, pa.scalar(",", pa.large_string()))
        if shown
        else pa.array([], pa.large_string())
    )
    return RawTable(
        path=path,
        columns=columns,
        data=frame,
        line_number=np.arange(1, table.num_rows + 1, dtype=np.int64),
        text=pd.Series(text, dtype="str"),
        malformed=_empty_malformed(),
        encoding="parquet",
        delimiter=None,
        has_header=True,
        sha256=sha,
    )


def _empty_malformed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_number": pd.Series([], dtype="int64"),
            "text": pd.Series([], dtype="str"),
            "message": pd.Series([], dtype="str"),
        }
    )


def _decode(path: Path, data: bytes, encoding: str | None) -> tuple[pa.Array, str]:
    """The file's text as a one-element large_string array, and the encoding used."""
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FactFileError(
            f"{path}: expected CSV text or Parquet. Got binary content (NUL bytes near "
            f"the start); it is neither a text file nor a Parquet file."
        )
    if encoding is not None:
        try:
            return pa.array([data.decode(encoding)], pa.large_string()), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise FactFileError(
                f"{path}: {_where(data, exc)}expected text in encoding {encoding!r}. {exc}"
            ) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data, name = data[3:], "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return pa.array([data.decode("utf-16")], pa.large_string()), "utf-16"
        except UnicodeDecodeError as exc:
            raise FactFileError(f"{path}: {_where(data, exc)}expected UTF-16 text. {exc}") from exc
    else:
        name = "utf-8"
    try:
        # Arrow validates UTF-8 in C without building a Python string.
        return pa.array([data], pa.large_binary()).cast(pa.large_string()), name
    except pa.ArrowInvalid:
        pass
    if name == "utf-8":
        try:
            return pa.array([data.decode("gbk")], pa.large_string()), "gbk"
        except UnicodeDecodeError:
            pass
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FactFileError(
            f"{path}: {_where(data, exc)}expected text in UTF-8, UTF-8 with BOM or GBK. "
            f"Got undecodable byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "(pass --encoding if the file uses another encoding)."
        ) from exc
    raise FactFileError(f"{path}: expected UTF-8 text. Got bytes Arrow refuses as UTF-8.")


def _where(data: bytes, exc: UnicodeDecodeError | LookupError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line}: "
    return ""


def _read_text(path: Path, holder: list[bytes], sha: str, options: ReadOptions) -> RawTable:
    whole, encoding = _decode(path, holder.pop(), options.encoding)
    lines = pc.utf8_rtrim(pc.split_pattern(whole, "\n").flatten(), "\r")
    del whole
    numbers = np.arange(1, len(lines) + 1, dtype=np.int64)
    nonblank = pc.invert(pc.equal(pc.utf8_trim_whitespace(lines), "")).to_numpy(
        zero_copy_only=False
    )
    if not nonblank.all():
        lines = lines.filter(pa.array(nonblank))
        numbers = numbers[nonblank]
    if len(lines) == 0:
        raise FactFileError(
            f"{path}: expected a header and data rows. Got an empty file (no non-blank line)."
        )
    sample = lines.slice(0, SNIFF_LINES).to_pylist()
    delimiter = options.delimiter or sniff_delimiter(sample)
    first_fields = split_sample(sample[:1], delimiter)[0]
    header = options.header
    if header is None:
        header = sniff_header(
            first_fields, split_sample(sample[1:], delimiter), options.known_names
        )
    if header:
        columns = tuple(name.strip().strip('"').strip() for name in first_fields)
        if len(set(columns)) != len(columns) or any(not c for c in columns):
            raise FactFileError(
                f"{path}: line {numbers[0]}: expected a header of distinct, non-empty column "
                f"names. Got {list(columns)}."
            )
        header_line = int(numbers[0])
        lines, numbers = lines.slice(1), numbers[1:]
        if len(lines) == 0:
            raise FactFileError(
                f"{path}: expected data rows after the header on line {header_line}. "
                "Got none: the file is empty."
            )
    else:
        width = modal_width(split_sample(sample, delimiter))
        columns = tuple(str(i) for i in range(width))
    placeholder = None
    # Checked on the data lines only: a quoted header alone (as Arrow's and pandas' CSV
    # writers produce) does not send a whole file through the slower quoted parser.
    has_quotes = delimiter != "whitespace" and pc.any(pc.match_substring(lines, '"')).as_py()
    if has_quotes:
        lines, numbers, placeholder = join_quoted_newlines(lines, numbers, delimiter, len(columns))
        frame, rows, malformed = _split_quoted(lines, numbers, delimiter, columns)
    else:
        fast = _split_arrow(lines, delimiter, columns) if delimiter != "whitespace" else None
        if fast is not None:
            frame, rows, malformed = fast, np.ones(len(lines), dtype=bool), _empty_malformed()
        else:
            frame, rows, malformed = _split_plain(lines, numbers, delimiter, columns)
    kept = lines if rows.all() else lines.filter(pa.array(rows))
    if placeholder is not None:  # quoted line breaks back in the values and texts
        kept = pc.replace_substring(kept, placeholder, "\n")
        malformed["text"] = malformed["text"].str.replace(placeholder, "\n", regex=False)
        for name in columns:
            frame[name] = frame[name].str.replace(placeholder, "\n", regex=False)
    return RawTable(
        path=path,
        columns=columns,
        data=frame,
        line_number=numbers[rows],
        text=pd.Series(kept, dtype="str"),
        malformed=malformed,
        encoding=encoding,
        delimiter=delimiter,
        has_header=header,
        sha256=sha,
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


def _split_arrow(lines: pa.Array, delimiter: str, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """Fields of unquoted lines through Arrow's multithreaded CSV parser (several times
    faster than splitting with compute kernels); ``None`` when some line does not split
    into exactly one row of ``len(columns)`` fields, so the caller's line-by-line split
    can report it as malformed with its line number."""
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
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    # A lone carriage return is a line break to Arrow, not to the line split: compare.
    if invalid or table.num_rows != len(lines):
        return None
    return pd.DataFrame(
        {
            name: pd.Series(_blank_to_null(table.column(f"f{i}")), dtype="str")
            for i, name in enumerate(columns)
        }
    )


def _split_plain(
    lines: pa.Array, numbers: np.ndarray, delimiter: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    if delimiter == "whitespace":
        fields = pc.split_pattern_regex(pc.utf8_trim_whitespace(lines), r"\s+")
    else:
        fields = pc.split_pattern(lines, delimiter)
    widths = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    good = widths == len(columns)
    bad = ~good
    malformed = _empty_malformed()
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


def _split_quoted(
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
        else _empty_malformed()
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
