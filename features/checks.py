"""Vectorised checks of imported fields: each marks the rows that fail on a
:class:`~features.quarantine.Rejects` with a reason code and a message naming the
field, what was expected and what was got, and returns the converted column.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.quarantine import Rejects, quoted
from features.schema import TIMESTAMP_DTYPE, AttributeSpec, FactsConfig, ReasonCode, arrow_table

__all__ = [
    "NULL_ID_TOKENS",
    "NULL_NUMBER_TOKENS",
    "PREFILTER_FROM_ROWS",
    "attribute_field",
    "blank_ids",
    "duplicate_rows",
    "future_times",
    "numbers_field",
    "parse_timestamps",
    "repeat_rows",
    "timestamps_field",
    "to_float",
]

# Rows (new plus stored) from which duplicate detection hashes first (see repeat_rows).
PREFILTER_FROM_ROWS = 50_000
# Rows (new plus stored) below which duplicates are counted in Python (see repeat_rows).
PYTHON_BELOW_ROWS = 2_000

_SCRATCH: tuple[int, duckdb.DuckDBPyConnection] | None = None
_SCRATCH_LOCK = threading.Lock()


def _small_check_connection() -> duckdb.DuckDBPyConnection:
    """A connection of its own (temp tables and registrations private to it) to one
    in-memory database per process, for the duplicate check of a small batch.

    Starting a database costs ~17 ms of CPU, more than the whole check of a live batch
    of a few events, which pays it on every micro-batch; a cursor costs a fraction. Big
    imports keep a database of their own, freed when they end.
    """
    global _SCRATCH
    with _SCRATCH_LOCK:
        # A database inherited through fork() is not usable in the child: one per process.
        if _SCRATCH is None or _SCRATCH[0] != os.getpid():
            _SCRATCH = (os.getpid(), duckdb.connect())
        return _SCRATCH[1].cursor()


# What CSV writers put in empty numeric cells (pandas, Arrow, R, SQL dumps): missing.
NULL_NUMBER_TOKENS: frozenset[str] = frozenset({"nan", "na", "n/a", "null", "none", "\\n"})
# What exports put where an id is missing (the number tokens and dashes): such an "id"
# is refused as blank instead of becoming a customer named "null".
NULL_ID_TOKENS: frozenset[str] = NULL_NUMBER_TOKENS | {"-", "--", "<na>", "nil", "undefined"}


def parse_timestamps(values: pd.Series, date_format: str | None) -> pd.Series:
    """Parse text to UTC timestamps; unparseable or blank values become NaT.

    Naive times are taken as UTC; ISO 8601 offsets are converted. ``date_format`` is
    a ``strptime`` format (e.g. ``%Y%m%d``); without it ISO 8601 is expected
    (``2021-03-04``, ``2021-03-04 10:00``, ``2021-03-04T10:00:00+08:00``, ``20210304``).
    """
    if date_format is None:
        fast = _arrow_iso_times(values)
        if fast is not None:
            return fast
    parsed = pd.to_datetime(values, format=date_format or "ISO8601", errors="coerce", utc=True)
    return pd.Series(parsed, index=values.index).astype(TIMESTAMP_DTYPE)


def _arrow_iso_times(values: pd.Series) -> pd.Series | None:
    """Arrow's ISO 8601 cast when every value has a zone (``Z`` or an offset) and parses:
    ten times faster than pandas' parser on the usual export format. ``None`` sends the
    column to pandas (naive times, other forms, any bad value), whose results are the
    reference: the two agree wherever Arrow accepts (``test_fast_paths``)."""
    try:
        text = pa.array(values.astype("string").array)
        parsed = pc.cast(text, pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    column = pa.table({"t": parsed}).to_pandas()["t"]
    return pd.Series(column.array, index=values.index).astype(TIMESTAMP_DTYPE)


def numbers_field(
    rejects: Rejects,
    values: pd.Series,
    *,
    field_name: str,
    bad_reason: ReasonCode,
    negative_reason: ReasonCode,
    max_value: float | None = None,
    too_large_reason: ReasonCode | None = None,
) -> pd.Series:
    """Parse a non-negative number column; mark non-numeric and negative values, and
    values above ``max_value`` (when given) with ``too_large_reason``."""
    shaped = _number_shaped(values)
    values = _null_tokens_to_na(values, shaped)
    numbers = to_float(values, shaped)
    present = values.notna().to_numpy()
    finite = np.isfinite(numbers.to_numpy())
    rejects.mark(
        present & ~finite,
        bad_reason,
        lambda hit: f"field '{field_name}': expected a number, got " + quoted(values, hit),
    )
    rejects.mark(
        present & finite & (numbers.to_numpy() < 0),
        negative_reason,
        lambda hit: f"field '{field_name}': expected a number >= 0, got " + quoted(values, hit),
    )
    if max_value is not None:
        rejects.mark(
            present & finite & (numbers.to_numpy() > max_value),
            too_large_reason or bad_reason,
            lambda hit: (
                f"field '{field_name}': expected a number <= {max_value:.0e}, got "
                + quoted(values, hit)
            ),
        )
    return numbers


# Plain decimals (what exports write): parsed by Arrow's cast, ten times faster than
# pandas and equal to it on these (test_fast_paths); anything else goes to pandas.
_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# The bytes a plain decimal is written with. A value made of these only is cast by
# Arrow directly; the regex above (30 ms per column of a 735k-row block, more than the
# cast) runs only when such a cast fails, and pandas only on the other values. Arrow
# accepts no value of these bytes that the regex refuses (test_fast_paths).
_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[np.frombuffer(b"0123456789.eE+-", dtype=np.uint8)] = True


def _number_shaped(values: pd.Series) -> np.ndarray | None:
    """Per value, whether it is present, not empty and written with digits, ``.``,
    ``e``, ``E``, ``+`` and ``-`` only; ``None`` when ``values`` is not text."""
    if not isinstance(values.dtype, pd.StringDtype):
        return None
    text = _arrow_text(values)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return None
    n = len(text)
    _, offsets_buffer, data_buffer = text.buffers()
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[text.offset : text.offset + n + 1]
    if data_buffer is None or not len(offsets) or offsets[-1] == offsets[0]:
        return np.zeros(n, dtype=bool)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    shaped = np.diff(offsets) > 0
    # Values holding a foreign byte, found from the (usually few) foreign bytes' places.
    foreign = np.flatnonzero(~_NUMBER_BYTES[data])
    if len(foreign):
        holders = np.searchsorted(offsets[1:] - offsets[0], foreign, side="right")
        shaped[holders] = False
    if text.null_count:
        shaped &= text.is_valid().to_numpy(zero_copy_only=False)
    return shaped


def _arrow_text(values: pd.Series) -> pa.Array:
    text = pa.array(values.astype("string").array)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return text


def to_float(values: pd.Series, shaped: np.ndarray | None = None) -> pd.Series:
    """Text to float64 like ``pd.to_numeric(errors="coerce")``: NaN where not a number.

    ``shaped``: :func:`_number_shaped` of ``values`` when the caller has it already.
    """
    if shaped is None:
        shaped = _number_shaped(values)
    if shaped is None:
        return _regex_to_float(values)
    out = np.full(len(values), np.nan)
    if shaped.any():
        text = _arrow_text(values)
        try:
            cast = pc.cast(text if shaped.all() else text.filter(pa.array(shaped)), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # "1e", "-", "1e999999"...
            return _regex_to_float(values)
        out[shaped] = cast.to_numpy(zero_copy_only=False)
    rest = values.notna().to_numpy() & ~shaped
    if rest.any():
        out[rest] = _regex_to_float(values[rest]).to_numpy()
    return pd.Series(out, index=values.index, dtype="float64")


def _regex_to_float(values: pd.Series) -> pd.Series:
    """:func:`to_float` through the decimal regex: Arrow's cast where it matches,
    pandas elsewhere."""
    out = np.full(len(values), np.nan)
    present = values.notna().to_numpy()
    text = _arrow_text(values)
    simple = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), False)
    mask = simple.to_numpy(zero_copy_only=False)
    if mask.any():
        try:
            out[mask] = pc.cast(text.filter(simple), pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. beyond float range
            mask = np.zeros(len(values), dtype=bool)
    rest = present & ~mask
    if rest.any():
        parsed = pd.to_numeric(values[rest], errors="coerce").astype("float64")
        out[rest] = parsed.to_numpy()
    return pd.Series(out, index=values.index, dtype="float64")


def _null_tokens_to_na(values: pd.Series, shaped: np.ndarray | None = None) -> pd.Series:
    """Blank out what CSV writers put in empty numeric cells (:data:`NULL_NUMBER_TOKENS`).

    ``shaped``: :func:`_number_shaped` of ``values``; no token is number-shaped, so
    only the other present values are looked at.
    """
    if shaped is None:
        return values.mask(values.str.lower().isin(list(NULL_NUMBER_TOKENS)))
    others = np.flatnonzero(values.notna().to_numpy() & ~shaped)
    if not len(others):
        return values
    tokens = np.zeros(len(values), dtype=bool)
    tokens[others] = values.iloc[others].str.lower().isin(list(NULL_NUMBER_TOKENS)).to_numpy()
    return values.mask(tokens) if tokens.any() else values


def timestamps_field(
    rejects: Rejects,
    values: pd.Series,
    *,
    field_name: str,
    date_format: str | None,
) -> pd.Series:
    """Parse a timestamp column (:func:`parse_timestamps`); mark what does not parse."""
    parsed = parse_timestamps(values, date_format)
    expected = f"a time matching {date_format}" if date_format else "an ISO 8601 time"
    rejects.mark(
        parsed.isna().to_numpy(),
        ReasonCode.BAD_TIMESTAMP,
        lambda hit: (
            f"field '{field_name}': expected {expected}, got "
            + quoted(values, hit).where(values[hit].notna(), "blank")
        ),
    )
    return parsed


def blank_ids(rejects: Rejects, ids: pd.Series) -> None:
    """Mark rows without a customer id: blank, or a null marker (:data:`NULL_ID_TOKENS`)."""
    rejects.mark(
        ids.isna().to_numpy(),
        ReasonCode.BLANK_ID,
        lambda hit: np.full(
            int(hit.sum()), "field 'customer_id': expected a non-empty id, got blank"
        ),
    )
    rejects.mark(
        _null_id_markers(ids),
        ReasonCode.BLANK_ID,
        lambda hit: (
            "field 'customer_id': expected a non-empty id, got "
            + quoted(ids, hit)
            + " (a null marker)"
        ),
    )


# First bytes a null marker can start with once lowercased (bytes from 0x80 on: any
# non-ASCII character, whose lowercase the prefilter does not try to predict).
_MARKER_STARTS = np.zeros(256, dtype=bool)
for _token in NULL_ID_TOKENS:
    _MARKER_STARTS[[ord(_token[0].lower()), ord(_token[0].upper())]] = True
_MARKER_STARTS[0x80:] = True


def _null_id_markers(ids: pd.Series) -> np.ndarray:
    """Where an id is a null marker (:data:`NULL_ID_TOKENS`, any case). Only the ids
    whose first byte can start one are lowercased and looked up: lowercasing every id
    cost 20 ms per 735k-row block, and real ids rarely start like a marker."""

    def lookup(values: pd.Series) -> np.ndarray:
        found = values.str.lower().isin(list(NULL_ID_TOKENS)).fillna(False)
        return np.asarray(found.to_numpy(dtype=bool), dtype=bool)

    if not isinstance(ids.dtype, pd.StringDtype):
        return lookup(ids)
    text = _arrow_text(ids)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return lookup(ids)
    _, offsets_buffer, data_buffer = text.buffers()
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.asarray(
        np.frombuffer(offsets_buffer, dtype=width)[text.offset : text.offset + len(text) + 1],
        dtype=np.int64,
    )
    if data_buffer is None:
        return np.zeros(len(text), dtype=bool)
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    starts = offsets[:-1]
    filled = offsets[1:] > starts
    first = np.zeros(len(text), dtype=np.uint8)
    first[filled] = data[starts[filled]]
    maybe = np.flatnonzero(filled & _MARKER_STARTS[first])
    markers = np.zeros(len(text), dtype=bool)
    if len(maybe):
        markers[maybe] = lookup(ids.iloc[maybe])
    return markers


def future_times(
    rejects: Rejects,
    times: pd.Series,
    *,
    field_name: str,
    now: pd.Timestamp,
    config: FactsConfig,
) -> None:
    """Mark times later than ``now`` plus ``facts.future_tolerance_hours``."""
    limit = now + pd.Timedelta(hours=config.future_tolerance_hours)
    rejects.mark(
        (times > limit).fillna(False).to_numpy(),
        ReasonCode.FUTURE_EVENT,
        lambda hit: (
            f"field '{field_name}': expected a time no later than {limit.isoformat()} "
            f"(now + facts.future_tolerance_hours={config.future_tolerance_hours}), got "
            + times[hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        ),
    )


def attribute_field(
    rejects: Rejects, spec: AttributeSpec, values: pd.Series, date_format: str | None
) -> pd.Series:
    """Convert one attribute column to its dtype; mark missing and disallowed values."""
    if spec.type in ("int", "float"):
        values = _null_tokens_to_na(values)
    present = values.notna().to_numpy()
    if spec.required:
        rejects.mark(
            ~present,
            ReasonCode.MISSING_ATTRIBUTE,
            lambda hit: np.full(
                int(hit.sum()),
                f"field '{spec.name}': expected a value (required attribute), got blank",
            ),
        )
    if spec.type == "string":
        if spec.allowed is None:
            return values.astype("string")
        canonical = {a.lower(): a for a in spec.allowed}
        converted = values.str.lower().map(canonical)
        rejects.mark(
            present & converted.isna().to_numpy(),
            ReasonCode.BAD_ATTRIBUTE,
            lambda hit: (
                f"field '{spec.name}': expected one of {spec.allowed}, got " + quoted(values, hit)
            ),
        )
        return converted.astype("string")
    if spec.type == "date":
        parsed = parse_timestamps(values, None)
        rejects.mark(
            present & parsed.isna().to_numpy(),
            ReasonCode.BAD_ATTRIBUTE,
            lambda hit: (
                f"field '{spec.name}': expected an ISO 8601 date, got " + quoted(values, hit)
            ),
        )
        return parsed
    numbers = to_float(values)
    arr = numbers.to_numpy()
    finite = np.isfinite(arr)
    ok = finite.copy()
    if spec.type == "int":
        ok &= np.equal(np.floor(np.where(finite, arr, 0)), np.where(finite, arr, 0))
    if spec.min is not None:
        ok &= np.where(finite, arr, 0) >= spec.min
    if spec.max is not None:
        ok &= np.where(finite, arr, 0) <= spec.max
    bounds = f" in [{spec.min}, {spec.max}]" if spec.min is not None or spec.max is not None else ""
    kind = "an integer" if spec.type == "int" else "a number"
    rejects.mark(
        present & ~ok,
        ReasonCode.BAD_ATTRIBUTE,
        lambda hit: f"field '{spec.name}': expected {kind}{bounds}, got " + quoted(values, hit),
    )
    clean = numbers.where(ok)
    return clean.round().astype("Int64") if spec.type == "int" else clean


def duplicate_rows(
    new: pd.DataFrame,
    columns: Sequence[str],
    stored: pd.DataFrame | pa.Table | None = None,
    *,
    keep_repeats: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicates among ``new`` and against ``stored``; see :func:`repeat_rows`."""
    repeats, in_store, _ = repeat_rows(new, columns, stored, keep_repeats=keep_repeats)
    return repeats, in_store


def repeat_rows(
    new: pd.DataFrame,
    columns: Sequence[str],
    stored: pd.DataFrame | pa.Table | None = None,
    *,
    keep_repeats: np.ndarray | None = None,
    prefilter_from: int = PREFILTER_FROM_ROWS,
    python_below: int = PYTHON_BELOW_ROWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact duplicates among ``new`` and against ``stored`` (missing equals missing).

    DuckDB hash-joins on the values themselves, so no hash collision can drop a row.

    Args:
        new: Rows to check.
        columns: The columns that make two rows identical.
        stored: Rows already stored.
        keep_repeats: Per row of ``new``, whether identical rows are *separate*
            occurrences (e.g. two purchases of the same amount on the same day in a log
            without order ids). Such rows are compared as a multiset: the k-th copy in
            ``new`` is a duplicate only when ``stored`` holds at least k copies, so a
            re-imported file still adds nothing while repeats within a file are kept.
        prefilter_from: From this many rows (new plus stored) on, rows are hashed first
            and only repeated hashes compared value by value; below it one ranking of
            every row is cheaper (a live batch of a few events).
        python_below: Below this many rows (new plus stored) the rows are counted as
            Python tuples instead (:func:`_python_repeats`, the same answers): a live
            micro-batch paid ~5 ms of DuckDB statements to compare a few rows.

    Returns:
        ``(repeats, in_store, kept)``: boolean masks over ``new``: rows equal to an
        earlier row of ``new`` (never set where ``keep_repeats``); rows equal to some row
        of ``stored`` (for ``keep_repeats`` rows: one of the copies the store holds);
        ``keep_repeats`` rows equal to an earlier row of ``new`` and kept as separate.
    """
    repeats = np.zeros(len(new), dtype=bool)
    in_store = np.zeros(len(new), dtype=bool)
    kept = np.zeros(len(new), dtype=bool)
    if not len(new):
        return repeats, in_store, kept
    keep = np.zeros(len(new), dtype=bool) if keep_repeats is None else np.asarray(keep_repeats)
    n_stored = len(stored) if stored is not None else 0
    if len(new) + n_stored < python_below:
        return _python_repeats(new, columns, stored if n_stored else None, keep)
    rows = (
        arrow_table(new[list(columns)].reset_index(drop=True))
        .append_column("_pos", pa.array(np.arange(len(new), dtype=np.int64)))
        .append_column("_keep", pa.array(keep, type=pa.bool_()))
    )
    # Column names are canonical names or validated attribute identifiers, never user text.
    quoted = [f'"{c}"' for c in columns]
    partition = ", ".join(quoted)
    has_stored = n_stored > 0
    small = len(new) + n_stored < prefilter_from
    with _small_check_connection() if small else duckdb.connect() as con:
        con.register("new_rows", rows)
        if has_stored:
            con.register("stored_raw", stored)
        where, stored_rows = "", "stored_raw"
        if not small:
            _hash_candidates(con, quoted, has_stored=has_stored)
            where, stored_rows = "WHERE _pos IN (SELECT _pos FROM candidates)", "stored_rows"
        con.execute(
            "CREATE TEMP TABLE ranked AS SELECT _pos, _keep, row_number() OVER "  # noqa: S608
            f"(PARTITION BY {partition} ORDER BY _pos) AS _rn, {partition} FROM new_rows " + where
        )
        found = con.execute("SELECT _pos FROM ranked WHERE _rn > 1 AND NOT _keep").fetchnumpy()[
            "_pos"
        ]
        repeats[np.asarray(found, dtype=np.int64)] = True
        if keep.any():
            found = con.execute("SELECT _pos FROM ranked WHERE _rn > 1 AND _keep").fetchnumpy()[
                "_pos"
            ]
            kept[np.asarray(found, dtype=np.int64)] = True
        if has_stored:
            match = " AND ".join(f"n.{c} IS NOT DISTINCT FROM s.{c}" for c in quoted)
            found = con.execute(
                f"SELECT n._pos FROM ranked n JOIN (SELECT {partition}, count(*) AS _n "  # noqa: S608
                f"FROM {stored_rows} GROUP BY ALL) s ON {match} WHERE NOT n._keep OR n._rn <= s._n"
            ).fetchnumpy()["_pos"]
            in_store[np.asarray(found, dtype=np.int64)] = True
    return repeats, in_store, kept & ~in_store


def _row_keys(frame: pd.DataFrame | pa.Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """One tuple of values per row, missing values (null, NaN, NaT) as ``None``."""
    if isinstance(frame, pa.Table):
        frame = frame.select(list(columns)).to_pandas()
    values = []
    for c in columns:
        column = frame[c].to_numpy(dtype=object)
        column[frame[c].isna().to_numpy(dtype=bool)] = None
        values.append(column)
    return list(zip(*values, strict=True)) if values else []


def _python_repeats(
    new: pd.DataFrame,
    columns: Sequence[str],
    stored: pd.DataFrame | pa.Table | None,
    keep: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`repeat_rows` for a few rows: the same masks from Python tuples.

    Python compares keys by value after hashing (equal hashes of unequal rows do not
    make them equal), and timestamps of different units by instant, as the query does.
    """
    repeats = np.zeros(len(new), dtype=bool)
    in_store = np.zeros(len(new), dtype=bool)
    kept = np.zeros(len(new), dtype=bool)
    stock = Counter(_row_keys(stored, columns)) if stored is not None else Counter()
    seen: Counter[tuple[Any, ...]] = Counter()
    for i, key in enumerate(_row_keys(new, columns)):
        seen[key] += 1
        rank = seen[key]
        if rank > 1:
            if keep[i]:
                kept[i] = True
            else:
                repeats[i] = True
        copies = stock.get(key, 0)
        # The k-th kept copy is a duplicate only when the store holds k copies.
        if copies and (not keep[i] or rank <= copies):
            in_store[i] = True
    return repeats, in_store, kept & ~in_store


def _hash_candidates(
    con: duckdb.DuckDBPyConnection, quoted: list[str], *, has_stored: bool
) -> None:
    """Create ``candidates`` (``_pos`` of new rows that may repeat a row) and, with
    stored rows, ``stored_rows`` (the stored rows that may equal a new one).

    Every row is hashed once and only rows whose hash repeats (or is stored) go on to the
    exact comparison: ranking every row by all its columns cost 4 s per 2M rows, and
    the rows of an import are almost all distinct. Equal rows hash alike, so no
    duplicate is missed; a collision only adds a candidate the exact step then clears.
    """
    listed = ", ".join(quoted)
    con.execute(
        f"CREATE TEMP TABLE hashed AS SELECT _pos, hash({listed}) AS _h FROM new_rows"  # noqa: S608
    )
    con.execute(
        "CREATE TEMP TABLE candidate_hashes AS "
        "SELECT _h FROM hashed GROUP BY _h HAVING count(*) > 1"
    )
    if has_stored:
        # Stored columns cast to the new rows' types, so equal values hash alike even when
        # the stored file has another physical type (string kinds, timestamp units).
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE new_rows)").fetchall()
        )
        cast = ", ".join(f"CAST({c} AS {types[c[1:-1]]}) AS {c}" for c in quoted)
        con.execute(
            f"CREATE TEMP TABLE stored_rows AS SELECT * FROM (SELECT {cast} FROM stored_raw) "  # noqa: S608
            f"WHERE hash({listed}) IN (SELECT _h FROM hashed)"
        )
        con.execute(
            f"INSERT INTO candidate_hashes SELECT DISTINCT hash({listed}) FROM stored_rows"  # noqa: S608
        )
    con.execute(
        "CREATE TEMP TABLE candidates AS SELECT _pos FROM hashed "
        "WHERE _h IN (SELECT _h FROM candidate_hashes)"
    )
