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
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
from features.fields import empty_malformed
from features.fields import split_arrow as _split_arrow
from features.fields import split_plain as _split_plain
from features.fields import split_quoted as _split_quoted

__all__ = [
    "DATA_SUFFIXES",
    "RawTable",
    "ReadOptions",
    "expand_paths",
    "file_sha256",
    "parquet_rows",
    "parse_mapping",
    "read_table",
    "sniff_dialect",
    "split_lines",
    "text_lines",
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
    return parquet_rows(path, table, sha, first_row=1)


def parquet_rows(path: Path, table: pa.Table, sha: str, *, first_row: int) -> RawTable:
    """Rows of a Parquet file (or a batch of them, the first being row ``first_row``) as
    text.

    Raises:
        FactFileError: A column cannot be rendered as text.
    """
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
        line_number=np.arange(first_row, first_row + table.num_rows, dtype=np.int64),
        text=pd.Series(text, dtype="str"),
        malformed=empty_malformed(),
        encoding="parquet",
        delimiter=None,
        has_header=True,
        sha256=sha,
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
    lines, numbers, _ = text_lines(whole, 1)
    del whole
    dialect, lines, numbers = sniff_dialect(path, lines, numbers, options)
    return split_lines(path, lines, numbers, dialect, encoding=encoding, sha=sha)


@dataclass(frozen=True)
class TextDialect:
    """How a text file's lines split into fields (sniffed once, from its first lines).

    Attributes:
        delimiter: The delimiter, or ``"whitespace"``.
        has_header: Whether the first line named the columns.
        columns: Column names (the header's, or ``"0"``, ``"1"``, ...).
    """

    delimiter: str
    has_header: bool
    columns: tuple[str, ...]


def text_lines(
    text: pa.Array, first_line: int, *, plain: bool = False
) -> tuple[pa.Array, np.ndarray, int]:
    """The non-blank lines of a one-element text array, their 1-based physical line
    numbers (counted from ``first_line``) and the number of physical lines.
    ``plain``: the text holds no whitespace but line feeds (nothing to trim)."""
    lines = pc.split_pattern(text, "\n").flatten()
    if not plain:
        lines = pc.utf8_rtrim(lines, "\r")
    physical = len(lines)
    numbers = np.arange(first_line, first_line + physical, dtype=np.int64)
    blank = pc.binary_length(lines) if plain else pc.utf8_trim_whitespace(lines)
    nonblank = pc.invert(pc.equal(blank, 0 if plain else "")).to_numpy(zero_copy_only=False)
    if not nonblank.all():
        lines = lines.filter(pa.array(nonblank))
        numbers = numbers[nonblank]
    return lines, numbers, physical


def sniff_dialect(
    path: Path, lines: pa.Array, numbers: np.ndarray, options: ReadOptions
) -> tuple[TextDialect, pa.Array, np.ndarray]:
    """The dialect of a text file from its first non-blank lines; the data lines (the
    header line dropped) and their numbers.

    Raises:
        FactFileError: No line, a bad header, or no data line after the header.
    """
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
    return TextDialect(delimiter, bool(header), columns), lines, numbers


def split_lines(
    path: Path,
    lines: pa.Array,
    numbers: np.ndarray,
    dialect: TextDialect,
    *,
    encoding: str,
    sha: str,
    plain: bool = False,
    quotes: bool | None = None,
    joined: bytes | memoryview | None = None,
) -> RawTable:
    """Split data lines into text fields; lines that do not split are malformed.

    ``plain``: the lines hold no whitespace (see :func:`text_lines`); ``quotes``:
    whether some line holds a double quote, when the caller knows (``None``: look);
    ``joined``: the lines joined by line feeds, when the caller holds those bytes.
    """
    delimiter, columns = dialect.delimiter, dialect.columns
    placeholder = None
    # Checked on the data lines only: a quoted header alone (as Arrow's and pandas' CSV
    # writers produce) does not send a whole file through the slower quoted parser.
    has_quotes = (
        delimiter != "whitespace"
        and len(lines) > 0
        and (quotes if quotes is not None else pc.any(pc.match_substring(lines, '"')).as_py())
    )
    if has_quotes:
        lines, numbers, placeholder = join_quoted_newlines(lines, numbers, delimiter, len(columns))
        frame, rows, malformed = _split_quoted(lines, numbers, delimiter, columns)
    else:
        fast = (
            _split_arrow(
                lines,
                delimiter,
                columns,
                plain=plain,
                joined=None if joined is None else pa.py_buffer(joined),
            )
            if delimiter != "whitespace"
            else None
        )
        if fast is not None:
            frame, rows, malformed = fast, np.ones(len(lines), dtype=bool), empty_malformed()
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
        has_header=dialect.has_header,
        sha256=sha,
    )
