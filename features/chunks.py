"""Reading a large file in bounded blocks: one :class:`~features.io.RawTable` per block.

A file no larger than one block is read whole by :func:`features.io.read_table`, as
before. A larger CSV is read a block of bytes at a time, cut after its last line break,
and each block goes through the same line split, dialect and field split as a whole
file: the dialect is sniffed once, from the first block; line numbers continue across
blocks; a record whose quoted field holds a line break is never cut in two (the lines
from the last unpaired opening quote on are read again with the next block, so quotes
pair exactly as in a whole-file read). Parquet is read a batch of rows at a time.

Files whose encoding cannot be cut at a byte ``\\n`` (UTF-16), and those that are not
valid UTF-8 when the encoding is detected (GBK is then tried on the whole file, as
before), are read whole.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.dialect import SNIFF_LINES, open_record_start
from features.errors import FactFileError
from features.io import (
    RawTable,
    ReadOptions,
    TextDialect,
    file_sha256,
    parquet_rows,
    read_table,
    sniff_dialect,
    split_lines,
    text_lines,
)

__all__ = ["CHUNK_BYTES", "read_chunks"]

# Bytes of text per block: about 700k events of a typical export. A block's working
# set (text, lines, fields, validation) is some 15x its size; this keeps it near 0.5 GiB.
CHUNK_BYTES = 32 << 20
# Bytes read at a time by the scan (sha256, UTF-8 check) of a file read in blocks.
_SCAN_BYTES = 8 << 20
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"


def read_chunks(
    path: Path, options: ReadOptions | None = None, *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[RawTable]:
    """The rows of one CSV or Parquet file, a bounded block at a time.

    Every block carries the whole file's sha256 and dialect; the blocks' rows together
    are exactly the rows :func:`features.io.read_table` returns for the file.

    Raises:
        FactFileError: As :func:`features.io.read_table`; a block that cannot be
            decoded is named by its line.
    """
    options = options or ReadOptions()
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as exc:
        raise FactFileError(f"{path}: cannot be read ({exc.strerror}).") from exc
    if size <= chunk_bytes:
        yield read_table(path, options)
        return
    if head.startswith(_PARQUET_MAGIC) or path.suffix.lower() in (".parquet", ".pq"):
        yield from _parquet_chunks(path, chunk_bytes)
        return
    encoding = _block_encoding(head, options.encoding)
    if encoding is None:
        yield read_table(path, options)
        return
    sha, valid = _scan(path, check_utf8=options.encoding is None)
    if not valid:  # GBK or undecodable: the whole-file reader decides and reports
        yield read_table(path, options)
        return
    yield from _text_chunks(path, options, encoding, sha, chunk_bytes)


def _block_encoding(head: bytes, encoding: str | None) -> str | None:
    """The encoding blocks are decoded with, or ``None`` when the file must be read whole
    (UTF-16, NUL bytes, an unknown codec or one where ``\\n`` is not the byte 0x0A)."""
    if b"\x00" in head or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if encoding is None:
        return "utf-8-sig" if head.startswith(_BOM) else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        return None
    if "\n".encode(encoding) != b"\n" or "a\n".encode(encoding) != b"a\n":
        return None
    return encoding


def _scan(path: Path, *, check_utf8: bool) -> tuple[str, bool]:
    """The file's sha256 and, with ``check_utf8``, whether all of it is valid UTF-8."""
    digest = hashlib.sha256()
    valid = True
    carry = b""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_SCAN_BYTES), b""):
            digest.update(block)
            if check_utf8 and valid:
                # Checked in place between line feeds (a multi-byte character never holds
                # 0x0A): the carried tail of the block before with this block's first
                # line, then the rest up to its last line feed as a view. Joining the
                # tail to the whole block copied 8 MiB twice per read (1.1 s of the 1.8 s
                # this scan took on a 900 MiB file, the sha256 taking the rest).
                cut = block.rfind(b"\n") + 1
                if cut:
                    first = block.find(b"\n") + 1
                    view = memoryview(block)
                    valid = _is_utf8(carry + block[:first] if carry else view[:first])
                    valid = valid and _is_utf8(view[first:cut])
                    carry = block[cut:]
                else:
                    carry += block
    if check_utf8 and valid and carry:
        valid = _is_utf8(carry)
    return digest.hexdigest(), valid


def _is_utf8(data: bytes | bytearray | memoryview) -> bool:
    try:
        _as_text(data)
    except pa.ArrowInvalid:
        return False
    return True


def _as_text(data: bytes | bytearray | memoryview) -> pa.Array:
    """``data`` as a one-element large_string array over the same bytes (no copy);
    Arrow validates the UTF-8 in C."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64).tobytes())
    binary = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    return binary.cast(pa.large_string())


def _decode(path: Path, data: bytes | bytearray, encoding: str, first_line: int) -> pa.Array:
    if encoding in ("utf-8", "utf-8-sig"):
        try:
            return _as_text(data)
        except pa.ArrowInvalid:  # the scan found it valid: the file changed meanwhile
            pass
    try:
        return pa.array([data.decode(encoding)], pa.large_string())
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise FactFileError(
            f"{path}: line {line}: expected text in encoding {encoding!r}. {exc}"
        ) from exc


def _text_chunks(
    path: Path, options: ReadOptions, encoding: str, sha: str, chunk_bytes: int
) -> Iterator[RawTable]:
    dialect: TextDialect | None = None
    pending: bytes | bytearray = b""
    first_line = 1  # physical number of the first line of ``pending``
    with path.open("rb") as handle:
        if encoding == "utf-8-sig":
            handle.read(len(_BOM))
        eof = False
        while not eof:
            data, eof = _read_after(handle, pending, chunk_bytes)
            if eof:
                body, rest = data, b""
            else:
                cut = data.rfind(b"\n")
                if cut < 0:  # one line longer than a block: read on
                    pending = data
                    continue
                # The block is the buffer itself, cut short in place: only the partial
                # last line is copied (slicing the body out copied all 32 MiB again).
                rest = bytes(memoryview(data)[cut + 1 :])
                del data[cut:]
                body = data
            del data
            plain = _plain(body)
            quotes = b'"' in body
            lines, numbers, physical = text_lines(
                _decode(path, body, encoding, first_line), first_line, plain=plain
            )
            # The lines joined again are the block itself when none was blank (nor
            # trimmed): handed to the field split instead of a copy (24 ms a block).
            joined = memoryview(body) if plain and not quotes and len(lines) == physical else None
            if dialect is None:
                if len(lines) <= SNIFF_LINES and not eof:  # too few lines to sniff: read on
                    pending = body + b"\n" + rest
                    continue
                dialect, lines, numbers = sniff_dialect(path, lines, numbers, options)
                if joined is not None and dialect.has_header:
                    header_end = body.find(b"\n")
                    joined = joined[header_end + 1 :] if header_end >= 0 else None
            start = (
                None
                if eof or not quotes
                else open_record_start(lines, dialect.delimiter, len(dialect.columns))
            )
            if start:  # a quoted field may go on in the next block: read it again then
                line = int(numbers[start])
                pending = _from_line(body, line - first_line) + b"\n" + rest
                lines, numbers = lines.slice(0, start), numbers[:start]
                first_line = line
            else:
                pending = rest
                first_line += physical
            del body, rest
            if len(lines):
                yield split_lines(
                    path,
                    lines,
                    numbers,
                    dialect,
                    encoding=encoding,
                    sha=sha,
                    plain=plain,
                    quotes=None if quotes else False,  # a quote byte: look at the data lines
                    joined=joined if not start else None,
                )


def _read_after(
    handle: BufferedReader, pending: bytes | bytearray, size: int
) -> tuple[bytearray, bool]:
    """``pending`` followed by the next ``size`` bytes of ``handle``, read straight into
    one new buffer (reading, then joining ``pending`` to the read, copied each block
    once more: with the body's slice, 1.3 s of the reader thread at 20M events, and
    bytes copies hold the GIL the check and commit stages wait for); whether the file
    had nothing more.

    Every block gets a buffer of its own: Arrow arrays made from the previous block
    still point into its bytes.
    """
    start = len(pending)
    data = bytearray(start + size)
    data[:start] = pending
    view = memoryview(data)
    end = start
    while end < len(data):
        n = handle.readinto(view[end:])
        if not n:
            break
        end += n
    view.release()
    del data[end:]
    return data, end == start


# Bytes the text kernels treat as whitespace, besides the line feed.
_BLANKS = (b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")


def _plain(body: bytes | bytearray) -> bool:
    """Whether ``body`` is ASCII without whitespace but line feeds: then no field needs
    trimming and no line is blank but an empty one (each test is a C scan of the bytes)."""
    return body.isascii() and not any(blank in body for blank in _BLANKS)


def _from_line(body: bytes | bytearray, index: int) -> bytes | bytearray:
    """``body`` from the start of its ``index``-th line (0-based) on."""
    if index == 0:
        return body
    breaks = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n"))
    return body[int(breaks[index - 1]) + 1 :]


def _parquet_chunks(path: Path, chunk_bytes: int) -> Iterator[RawTable]:
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise FactFileError(
            f"{path}: expected a Parquet file (it is named or starts like one). "
            f"Got an unreadable file: {exc}"
        ) from exc
    total = handle.metadata.num_rows
    if total == 0:
        raise FactFileError(f"{path}: expected at least one row. Got an empty Parquet file.")
    sha = file_sha256(path)
    # As many rows per batch as a text block holds, from the file's bytes per row.
    rows = max(1, int(total * chunk_bytes / max(path.stat().st_size, 1)))
    first = 1
    try:
        for batch in handle.iter_batches(batch_size=rows):
            table = pa.Table.from_batches([batch])
            yield parquet_rows(path, table, sha, first_row=first)
            first += table.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise FactFileError(f"{path}: row {first} on: expected readable Parquet. {exc}") from exc
