"""The row hashes of an events file, kept beside it (``<file>.rowhashes``).

An import hashes every candidate row (DuckDB's 64-bit hash over the canonical columns)
to find repeats; the same hashes, kept sorted beside the file they were written to,
answer an append's question "can this new row equal a stored one?" without reading
the stored file: only rows whose hash is found there can be exact duplicates of a stored
event. Appending 1M events to a 20M-event store hashed the key columns of all 20M
stored events first (about 1.5 s of a ~3 s append); reading this index costs what the
new rows' lookups touch.

The index is a superset: it holds the hashes of every candidate row of the imports that
wrote the file (rows found to be duplicates later included), so a hash not found means
no stored row equals the new one, and a hash found means the stored rows are read to
compare values (a 64-bit collision costs a read, never a wrong answer). It is trusted
only when the hashed tables' column types equal the new rows' (equal values of other
types hash differently), the DuckDB version is the one that hashed them, and the file
still holds the rows it was written with. A store write that replaces a file without an
index removes the old index in the same commit; an encrypted store keeps none (hashes of
a few columns' values are guessable).

Layout: a JSON header line (padded to 4096 bytes), then the filter's words (a large index
only), then the sorted runs of uint64 hashes, one per import block.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.coding import sorted_hashes

__all__ = [
    "INDEX_SUFFIX",
    "IndexCommit",
    "RowHashIndex",
    "SeenFilter",
    "index_path",
    "indexes_of",
    "merged",
    "read_index",
    "row_hashes",
    "schema_signature",
    "set_index_rows",
    "sorted_distinct",
    "table_index",
    "write_index",
]

INDEX_SUFFIX = ".rowhashes"
_FORMAT = "tagsmith-row-hashes-1"
_HEADER_BYTES = 4096
# Up to this many hashes an index is one sorted run without a filter (sorting 4M hashes
# costs ~0.3 s); a larger one keeps its import's sorted blocks and the import's filter.
SINGLE_RUN_MAX = 4_000_000
# More runs than this are merged into one when indexes are merged (a compaction).
_MAX_RUNS = 64


class SeenFilter:
    """A blocked Bloom filter of 64-bit row hashes: two bits of one 64-bit word per hash
    (one memory access), 2**22 words (32 MiB, touched only where set). At 20M hashes
    about 2 % of new hashes get a false "maybe".

    Args:
        words: The words of a filter built before (read from an index).
    """

    WORD_BITS = 22

    def __init__(self, words: np.ndarray | None = None) -> None:
        self.words = np.zeros(1 << self.WORD_BITS, dtype=np.uint64) if words is None else words

    def _slots(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Disjoint bit fields of a well-mixed hash: the word, then two bits in it.
        word = hashes >> np.uint64(64 - self.WORD_BITS)
        one, six = np.uint64(1), np.uint64(63)
        mask = (one << (hashes & six)) | (one << ((hashes >> np.uint64(6)) & six))
        return word, mask

    def add(self, hashes: np.ndarray) -> None:
        """Remember ``hashes``."""
        word, mask = self._slots(hashes)
        if len(word) > 1 and bool((word[1:] >= word[:-1]).all()):
            # Sorted hashes (as the spill keeps them): a repeated word is a run, its bits
            # merged first, then one write per word (22 ms a block instead of 35).
            starts = np.flatnonzero(np.concatenate(([True], word[1:] != word[:-1])))
            self.words[word[starts]] |= np.bitwise_or.reduceat(mask, starts)
            return
        # A fancy-indexed |= keeps one write per repeated word: set, then redo the
        # words whose bits were lost (a few rounds; several times faster than ufunc.at).
        while len(word):
            self.words[word] |= mask
            lost = (self.words[word] & mask) != mask
            word, mask = word[lost], mask[lost]

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: ``False`` if it was never added (``True`` may be a false alarm)."""
        word, mask = self._slots(hashes)
        return np.asarray((self.words[word] & mask) == mask, dtype=bool)


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for integers, a sort and a mask: numpy 2.4's ``unique``
    took 0.86 s for 600k random uint64 hashes and 6 ms for 15k, the sort 0.14 s and
    0.4 ms (load ~4). The sort is :func:`features.coding.sorted_hashes` for uint64
    hashes (the import's bucketed sort), ``np.sort`` for other integers."""
    ordered = sorted_hashes(values) if values.dtype == np.uint64 else np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def schema_signature(schema: pa.Schema) -> str:
    """The column names and types that decide a row's hash (not metadata, not nullability)."""
    return ";".join(f"{f.name}:{f.type}" for f in schema)


@dataclass(frozen=True)
class RowHashIndex:
    """Row hashes of the rows of one events file (a superset: see the module).

    Args:
        runs: Sorted uint64 hashes, one array per import block.
        schema: :func:`schema_signature` of the tables hashed.
        words: A :class:`SeenFilter`'s words over every run (``None``: no filter).
    """

    runs: tuple[np.ndarray, ...]
    schema: str
    words: np.ndarray | None = None

    @classmethod
    def of(
        cls, runs: Sequence[np.ndarray], schema: str, words: np.ndarray | None = None
    ) -> RowHashIndex:
        """An index of ``runs`` (each sorted): one run and no filter while small, else
        the runs and a filter (``words`` when given: a filter already over every run)."""
        runs = [np.asarray(r, dtype=np.uint64) for r in runs if len(r)]
        total = sum(len(r) for r in runs)
        if total <= SINGLE_RUN_MAX or len(runs) > _MAX_RUNS:
            runs = [_merged_runs(runs)]
            if total <= SINGLE_RUN_MAX:
                return cls(tuple(runs), schema)
        if words is None:
            seen = SeenFilter()
            for run in runs:
                seen.add(run)
            words = seen.words
        return cls(tuple(runs), schema, words)

    def found(self, wanted: np.ndarray) -> np.ndarray:
        """Per hash of ``wanted`` (sorted, distinct), whether the index holds it."""
        hit = np.zeros(len(wanted), dtype=bool)
        ask = np.arange(len(wanted))
        if self.words is not None:
            ask = np.flatnonzero(SeenFilter(self.words).maybe(wanted))
        values = wanted[ask]
        for run in self.runs:
            if len(values) and len(run):
                at = np.minimum(np.searchsorted(run, values), len(run) - 1)
                hit[ask[run[at] == values]] = True
        return hit


def _merged_runs(runs: list[np.ndarray]) -> np.ndarray:
    """Sorted runs as one sorted array (a stable sort merges runs: timsort)."""
    if len(runs) == 1:
        return runs[0]
    whole = np.concatenate(runs) if runs else np.zeros(0, dtype=np.uint64)
    return np.sort(whole, kind="stable")


def row_hashes(
    table: pa.Table, columns: list[str], con: duckdb.DuckDBPyConnection | None = None
) -> np.ndarray:
    """DuckDB's 64-bit hash of each row over ``columns`` (equal rows, equal hashes), on
    ``con`` when given (a connection costs more than hashing a block's key columns)."""
    listed = ", ".join(f'"{c}"' for c in columns)
    own = con is None
    con = duckdb.connect() if con is None else con
    try:
        con.register("rows_in", table.select(columns))
        found = con.execute(f"SELECT hash({listed}) AS h FROM rows_in").fetchnumpy()["h"]  # noqa: S608
        con.unregister("rows_in")
    finally:
        if own:
            con.close()
    return np.asarray(found, dtype=np.uint64)


def table_index(table: pa.Table, schema: pa.Schema, columns: Sequence[str]) -> RowHashIndex:
    """The index of a table of events written without one (not by an import, which
    hashes its rows anyway): its ``columns`` cast to ``schema`` (the types an import's
    rows have, so equal rows hash alike) and hashed by DuckDB as an import hashes them.

    A store written whole by other code (``FactStore.write``: a generated or rebuilt
    store, an erasure) kept no index, so every later append hashed the keys of every
    stored event instead (~1.5 s at 20M events, each time).
    """
    found = row_hashes(table.select(list(columns)).cast(schema), list(columns))
    hashes = sorted_distinct(found)
    return RowHashIndex.of([hashes], schema_signature(schema))


def index_path(events_file: Path) -> Path:
    """Where the index of ``events_file`` lives."""
    return events_file.with_name(events_file.name + INDEX_SUFFIX)


def write_index(index: RowHashIndex, path: Path, rows: int | None) -> None:
    """Write ``index`` to ``path`` for an events file of ``rows`` rows (``None``: not
    known yet, see :func:`set_index_rows`; such an index is never trusted)."""
    with path.open("wb") as out:
        out.write(_header(index, rows))
        for array in ([] if index.words is None else [index.words]) + list(index.runs):
            out.write(np.ascontiguousarray(array, dtype=np.uint64).data)


def set_index_rows(path: Path, rows: int) -> None:
    """Record in the index at ``path`` the rows of the events file it describes."""
    with path.open("r+b") as out:
        header = json.loads(out.readline(_HEADER_BYTES))
        out.seek(0)
        out.write(_header_bytes(header | {"rows": rows}))


def _header(index: RowHashIndex, rows: int | None) -> bytes:
    return _header_bytes(
        {
            "format": _FORMAT,
            "duckdb": duckdb.__version__,
            "schema": index.schema,
            "rows": rows,
            "runs": [len(r) for r in index.runs],
            "words": 0 if index.words is None else len(index.words),
        }
    )


def _header_bytes(header: dict[str, object]) -> bytes:
    """A JSON line of a fixed size (the rows are filled in after the file is written)."""
    text = json.dumps(header).encode("utf-8")
    if len(text) >= _HEADER_BYTES:
        raise ValueError(f"Expected an index header under {_HEADER_BYTES} bytes. Got {len(text)}.")
    return text + b" " * (_HEADER_BYTES - 1 - len(text)) + b"\n"


def read_index(path: Path, rows: int) -> RowHashIndex | None:
    """The index at ``path`` when it describes a file of ``rows`` rows hashed by this
    DuckDB version; ``None`` when missing or not trusted (its rows are mapped, not read)."""
    try:
        with path.open("rb") as handle:
            line = handle.readline(_HEADER_BYTES)
        header = json.loads(line)
        if (
            len(line) != _HEADER_BYTES
            or header.get("format") != _FORMAT
            or header.get("duckdb") != duckdb.__version__
            or header.get("rows") != rows
        ):
            return None
        sizes = [int(n) for n in header["runs"]]
        n_words = int(header["words"])
        total = n_words + sum(sizes)
        if path.stat().st_size != len(line) + 8 * total:
            return None
        data = np.memmap(path, dtype=np.uint64, mode="r", offset=len(line), shape=(total,))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    words = data[:n_words] if n_words else None
    ends = n_words + np.cumsum([0, *sizes])
    runs = tuple(data[int(a) : int(b)] for a, b in itertools.pairwise(ends))
    return RowHashIndex(runs, str(header["schema"]), words)


def merged(indexes: Sequence[RowHashIndex | None]) -> RowHashIndex | None:
    """One index over several files' rows (a store rewritten whole); ``None`` unless
    every file has one and all hashed the same column types."""
    if not indexes or any(i is None for i in indexes):
        return None
    found = [i for i in indexes if i is not None]
    if len({i.schema for i in found}) != 1:
        return None
    return RowHashIndex.of([r for i in found for r in i.runs], found[0].schema)


def indexes_of(paths: Sequence[Path]) -> list[RowHashIndex | None]:
    """The trusted index of each plain events file of ``paths`` (``None`` where none)."""
    return [read_index(index_path(p), pq.read_metadata(p).num_rows) for p in paths]


class IndexCommit:
    """A store commit's index files, on a thread of their own while the events file is
    written (192 MiB for 20M events: 0.15-0.3 s of writing, done beside the events).

    ``index`` goes beside the one events file written (``(temp, final)`` pairs, the
    index's temp name from ``temp_for``); without one, the old index of each replaced
    file is dropped, and the indexes of ``removed`` files are dropped either way.
    Use as a context manager (the thread is joined on leaving), then :meth:`finish`.
    """

    def __init__(
        self,
        index: RowHashIndex | None,
        written: Sequence[tuple[Path, Path]],
        removed: Sequence[Path],
        temp_for: Callable[[Path], Path],
    ) -> None:
        self._drops: list[tuple[Path | None, Path]] = []
        self._files: tuple[Path, Path] | None = None
        for tmp, final in written:
            if index is not None and len(written) == 1:
                self._files = (tmp, temp_for(index_path(final)))
            elif index_path(final).exists():
                self._drops.append((None, index_path(final)))
        self._drops.extend((None, index_path(p)) for p in removed if index_path(p).exists())
        self._index = index
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tagsmith-row-hashes")
        self._job: Future[None] | None = None

    def __enter__(self) -> IndexCommit:
        if self._index is not None and self._files is not None:
            self._job = self._pool.submit(write_index, self._index, self._files[1], None)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def finish(self) -> list[tuple[Path | None, Path]]:
        """Complete the written index with its events file's rows (once that is
        written); the indexes to remove with the commit, as ``(None, path)``.

        Raises:
            OSError: The index could not be written.
        """
        if self._job is not None and self._files is not None:
            self._job.result()
            events_tmp, index_tmp = self._files
            set_index_rows(index_tmp, pq.read_metadata(events_tmp).num_rows)
        return self._drops
