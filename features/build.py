"""Point-in-time behaviour features from fact tags, as of any date.

:func:`build_features` turns canonical customers and events into one row per customer
who signed up before ``as_of``, using only events with ``occurred_at < as_of``. Every
feature and its exact definition (including when it is null) is listed by
:func:`features.spec.feature_catalog`.

How it is fast: :func:`prepare_events` codes customers as integers (their rank by
``customer_id``; in the fact store's order only the first id of each customer's run is
looked up) and splits events by type, sorted by ``(customer, time)`` (nothing to sort
in the fact store's order); the events of a customer before any cutoff are then a
prefix of its segment, found for all customers at once with one ``numpy.searchsorted``.
Orders are told apart by a 64-bit hash of the id's bytes, every equality confirmed on
the text, so no id becomes a Python object. Counts are differences of those bounds, sums
are differences of prefix sums (of fixed-point integers, so they are exact and do not
depend on input row order), and the rhythm and preference families are a few
vectorised passes. A :class:`PreparedEvents` serves any number of cutoffs without
sorting again.

Missing-value semantics (the same everywhere): counts and sums are 0 when nothing
happened; "days since X" is null when X never happened (``never_purchased`` says why
``recency_days`` is null); ratios are null when their denominator is 0; trends are 0
when both windows are empty; attributes are null when the fact is missing.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.errors import FeaturesError, SchemaError, SpecError
from features.schema import EVENT_DTYPES, TIMESTAMP_DTYPE, check_customers, check_events
from features.spec import FeatureSpec, age_band_labels, default_spec, feature_catalog

__all__ = [
    "FEATURE_EVENT_COLUMNS",
    "AsOf",
    "PreparedEvents",
    "build_features",
    "lean_allocators",
    "normalize_as_of",
    "prepare_events",
]

AsOf = str | dt.date | dt.datetime | pd.Timestamp | np.datetime64
SEC_US = 1_000_000
DAY_US = 86_400 * SEC_US
DAY_S = 86_400
# Amounts are summed as integers of 1/10000 currency unit: exact and order independent.
AMOUNT_SCALE = 10_000
_REL_MAX = 2**32 - 1
_REL_MASK = np.int64(_REL_MAX)
# The event columns features read; product_id and quantity need not be loaded.
FEATURE_EVENT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "occurred_at",
    "event_type",
    "amount",
    "category",
    "order_id",
)
_I64 = np.int64
# Events per block where a per-event temporary would otherwise span a whole type.
_BLOCK_EVENTS = 1 << 20
# One worker for preparation steps that overlap with the caller's work.
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-features")


class _Typed:
    """Events of one type sorted by (customer code, time).

    Only the search key and the segment bounds are always held (8 bytes per event).
    Times are read off the key when every event time is a whole second (else kept
    separately), and row positions are found again from the event type codes when the
    events came in the fact store's order; the full ``t_us`` and ``rows`` arrays are
    built on first access (the rule engine's windows use them) and then kept.
    """

    def __init__(
        self,
        key: np.ndarray,
        starts: np.ndarray,
        base_sec: int,
        *,
        t_us: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        find_rows: Callable[[], np.ndarray] | None = None,
    ) -> None:
        if rows is None and find_rows is None:
            raise FeaturesError("Expected event rows or a way to find them. Got neither.")
        self.key = key  # int64: code << 32 | (second - base), ascending
        self.starts = starts  # int64, n_customers + 1: segment bounds per customer code
        self.base_sec = base_sec
        self._t_us = t_us
        self._rows = rows
        self._find_rows = find_rows
        # Built on first use: prefix sums of fixed-point amounts (len + 1), and the
        # amounts with a trailing sentinel for reduceat (len + 1).
        self.amount_cs: np.ndarray | None = None
        self.amount: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.key)

    def t_at(self, at: np.ndarray | slice) -> np.ndarray:
        """int64 microseconds since the epoch of the events at ``at``."""
        if self._t_us is not None:
            return self._t_us[at]
        t = self.key[at] & _REL_MASK
        t += self.base_sec
        t *= SEC_US
        return t

    def micros_until(self, cut_us: int, lo: int, hi: int, out: np.ndarray) -> None:
        """``cut_us - t_us`` of events ``lo:hi`` into the int64 ``out`` (no temporary)."""
        if self._t_us is not None:
            np.subtract(cut_us, self._t_us[lo:hi], out=out)
            return
        np.bitwise_and(self.key[lo:hi], _REL_MASK, out=out)
        np.multiply(out, -SEC_US, out=out)
        out += cut_us - self.base_sec * SEC_US

    def seconds_at(self, at: np.ndarray | slice) -> np.ndarray:
        """Whole seconds since ``base_sec`` (floored) of the events at ``at``."""
        return self.key[at] & _REL_MASK

    @property
    def t_us(self) -> np.ndarray:
        """int64 microseconds since the epoch, ascending per customer."""
        if self._t_us is None:
            self._t_us = self.t_at(slice(None))
        return self._t_us

    @property
    def rows(self) -> np.ndarray:
        """Row positions in the events frame (int32; int64 past 2**31 events), kept."""
        if self._rows is None:
            self._rows = self.rows_now()
        return self._rows

    def rows_now(self) -> np.ndarray:
        """:attr:`rows`, found again (and not kept) when they are not held."""
        if self._rows is not None:
            return self._rows
        assert self._find_rows is not None  # guaranteed by __init__
        return self._find_rows()


@dataclass(frozen=True)
class _Days:
    """Distinct purchase days per customer, in (customer, day) order."""

    row_cs: np.ndarray  # int32 (past 2**31 events int64), n_purchases + 1: prefix count
    # of first-of-day purchases
    code: np.ndarray  # int32 customer code per day row
    day: np.ndarray  # int32 UTC day number
    gap: np.ndarray  # int32 days since the customer's previous purchase day (0 if first)
    gap_sq_cs: np.ndarray  # int64, len + 1: prefix sums of gap**2


@dataclass(frozen=True)
class _Groups:
    """Events of one type with a category, grouped by (customer, category)."""

    seconds: np.ndarray  # uint32 seconds since base_sec in (code, category, time) order
    bounds: np.ndarray  # int64, n_groups + 1
    code: np.ndarray  # int32 customer code per group
    cat: np.ndarray  # int32 category code per group (alphabetical rank)
    run_starts: np.ndarray  # int64: first group of each customer
    labels: np.ndarray  # object: category label per code


def lean_allocators() -> None:
    """Let Arrow allocate with the system allocator in this process.

    Arrow's default allocator (mimalloc) keeps the pages the Parquet reader freed,
    about 0.15x the loaded events of a 1M-customer fact store, mapped where numpy's
    arrays cannot reuse them. Process-wide, so not done by :func:`build_features`
    itself: ``tagsmith features build`` calls it before loading facts, and so does
    ``benchmarks/features.py``. Measured to cost no time there.
    """
    pa.set_memory_pool(pa.system_memory_pool())


def normalize_as_of(value: AsOf) -> pd.Timestamp:
    """``value`` as a UTC timestamp (naive values are taken as UTC).

    Raises:
        FeaturesError: The value is not a date/time or is not a whole second.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise FeaturesError(f"Expected as_of to be a date or timestamp. Got {value!r}.") from exc
    if ts is pd.NaT:
        raise FeaturesError(f"Expected as_of to be a date or timestamp. Got {value!r}.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts.value % 1_000_000_000:
        raise FeaturesError(f"Expected as_of to be a whole second. Got {ts.isoformat()}.")
    return ts


def _check_events(events: pd.DataFrame) -> None:
    """Canonical events, or the subset of their columns that features read."""
    if all(c in events.columns for c in EVENT_DTYPES):
        check_events(events)
        return
    subset = events.reindex(columns=list(FEATURE_EVENT_COLUMNS))
    missing = [c for c in FEATURE_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise SchemaError(
            f"The events table must have columns {list(FEATURE_EVENT_COLUMNS)}. "
            f"Missing {missing}; got {list(events.columns)} instead."
        )
    for column in FEATURE_EVENT_COLUMNS:
        got, want = str(subset[column].dtype), EVENT_DTYPES[column]
        if got != want and not (want == "string" and got in ("str", "string")):
            raise SchemaError(
                f"Column '{column}' of the events table must have dtype {want}. Got {got} instead."
            )
    if (subset["amount"] < 0).any():
        raise SchemaError("Column 'amount' of events must be >= 0. Got negative amounts.")


def _to_arrow(values: pd.Series) -> pa.ChunkedArray:
    arr = pa.array(values.array) if hasattr(values.array, "__arrow_array__") else None
    if arr is None:
        arr = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _customer_runs(values: pa.ChunkedArray, value_set: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal ids: (first row of each run, position of its id in ``value_set``).

    Positions are int64, -1 for ids not in ``value_set``. Events usually arrive grouped
    by customer; then only the first id of each run is looked up, and ids are compared
    chunk by chunk (no copy of the column). When runs are short (e.g. a log in time
    order) every row is its own run and the lookups are split across cores.
    """
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=_I64), np.empty(0, dtype=_I64)
    value_set = value_set.cast(values.type)
    heads_parts: list[np.ndarray] = []
    head_values: list[pa.Array] = []
    previous: Any = None
    pos = 0
    for chunk in values.chunks:
        m = len(chunk)
        if m == 0:
            continue
        changed = np.ones(m, dtype=bool)
        if m > 1:
            differs = pc.fill_null(pc.not_equal(chunk.slice(1), chunk.slice(0, m - 1)), True)
            changed[1:] = differs.to_numpy(zero_copy_only=False)
        first = chunk[0]
        changed[0] = previous is None or not (first.is_valid and first == previous)
        previous = chunk[m - 1] if chunk[m - 1].is_valid else None
        local = np.flatnonzero(changed)
        heads_parts.append(local + pos)
        head_values.append(chunk.take(pa.array(local)))
        pos += m
        if sum(len(h) for h in heads_parts) * 4 >= pos and pos >= 100_000:
            break  # short runs: look every row up instead
    else:
        heads = np.concatenate(heads_parts)
        return heads, _index_in_plain(pa.chunked_array(head_values, values.type), value_set)
    # Arrow's hash lookups run on one core and release the GIL: split across cores.
    workers = max(1, min(4, os.cpu_count() or 1))
    edges = [n * k // workers for k in range(workers + 1)]
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(
            lambda k: _index_in_plain(values.slice(edges[k], edges[k + 1] - edges[k]), value_set),
            range(workers),
        )
        return np.arange(n, dtype=_I64), np.concatenate(list(parts))


def _index_in_plain(values: pa.ChunkedArray | pa.Array, value_set: pa.Array) -> np.ndarray:
    found = pc.fill_null(pc.index_in(values, value_set=value_set), -1)
    if isinstance(found, pa.ChunkedArray):
        return np.concatenate(
            [np.asarray(c.to_numpy(zero_copy_only=False), dtype=_I64) for c in found.chunks]
            or [np.empty(0, dtype=_I64)]
        )
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=_I64)


def _take(values: pd.Series, rows: np.ndarray) -> pa.ChunkedArray:
    """``values`` at positions ``rows`` as Arrow (in position order when ``rows`` is
    ascending, which makes the gather sequential)."""
    if len(rows) and bool(np.all(rows[1:] >= rows[:-1])):
        return _to_arrow(values).take(pa.array(rows))
    order = np.argsort(rows, kind="stable")
    taken = _to_arrow(values).take(pa.array(rows[order])).combine_chunks()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order), dtype=order.dtype)
    return pa.chunked_array([taken.take(pa.array(inverse))])


def _dictionary_codes(values: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary codes of ``values`` (-1 for null) as int64, and the dictionary."""
    encoded = pc.dictionary_encode(values)
    if encoded.num_chunks == 0:
        return np.empty(0, dtype=_I64), pa.array([], type=pa.string())
    # Arrow encodes a chunked array with one shared dictionary; when it did not, encode
    # one contiguous array (unify_dictionaries is quadratic in the number of chunks).
    addresses = {tuple(b.address for b in c.dictionary.buffers() if b) for c in encoded.chunks}
    if len(addresses) > 1:
        encoded = pa.chunked_array([pc.dictionary_encode(values.combine_chunks())])
    parts = [
        np.asarray(pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False), dtype=_I64)
        for c in encoded.chunks
    ]
    return np.concatenate(parts), encoded.chunks[0].dictionary


_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
_CODE_MUL = np.uint64(0xC2B2AE3D27D4EB4F)


def _string_hashes(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of each string (equal strings hash equal) and a null mask.

    Reads the Arrow buffers directly, eight bytes per vectorised step.
    """
    hashes, nulls = [], []
    for chunk in values.chunks:
        if not pa.types.is_large_string(chunk.type):
            chunk = chunk.cast(pa.large_string())
        n = len(chunk)
        if n == 0:
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=n + 1, offset=8 * chunk.offset)
        padded = np.zeros((data_buf.size if data_buf is not None else 0) + 8, dtype=np.uint8)
        if data_buf is not None and data_buf.size:
            padded[: data_buf.size] = np.frombuffer(data_buf, dtype=np.uint8)
        # Little-endian 8-byte words starting at every byte (unaligned view, no copy).
        words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        start = offsets[:-1]
        length = offsets[1:] - start
        h = length.astype(np.uint64) * _HASH_MUL
        for k in range(0, int(length.max(initial=0)), 8):
            rest = length - k
            w = words[np.minimum(start + k, len(words) - 1)]
            keep = np.where(rest >= 8, 64, np.clip(rest, 0, 8) * 8).astype(np.uint64)
            w = np.where(keep == 64, w, w & ((np.uint64(1) << keep) - np.uint64(1)))
            mixed = (h ^ w) * _HASH_MUL
            mixed ^= mixed >> np.uint64(31)
            h = np.where(rest > 0, mixed, h)  # a string's hash ignores longer neighbours
        hashes.append(h)
        nulls.append(np.asarray(chunk.is_null().to_numpy(zero_copy_only=False), dtype=bool))
    if not hashes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    return np.concatenate(hashes), np.concatenate(nulls)


def _first_of_order(
    code: np.ndarray,
    hashes: np.ndarray,
    nulls: np.ndarray,
    strings_at: Callable[[np.ndarray], pa.ChunkedArray],
) -> np.ndarray:
    """True where a purchase opens an order new to its customer, exactly.

    Args:
        code: Customer code per purchase, purchases in (customer, time) order.
        hashes: Hash of each purchase's order id (:func:`_string_hashes`).
        nulls: True where the purchase has no order id (then it is its own order).
        strings_at: The order ids at given purchase positions.
    """
    flags = nulls.copy()
    idx = np.flatnonzero(~nulls)
    key = (hashes[idx] ^ (code[idx].astype(np.uint64) * _CODE_MUL)) * _HASH_MUL
    c = code[idx]
    # Usual case: an order's rows are adjacent, so only the first of a run is new.
    same = np.zeros(len(idx), dtype=bool)
    same[1:] = (key[1:] == key[:-1]) & (c[1:] == c[:-1])
    pos = np.flatnonzero(same)
    if len(pos):
        equal = pc.equal(strings_at(idx[pos]), strings_at(idx[pos - 1]))
        same[pos] = np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
    heads = idx[~same]
    head_key = key[~same]
    ordered = np.sort(head_key)
    repeated = ordered[1:] == ordered[:-1]
    if not repeated.any():
        flags[heads] = True
        return flags
    # Some ids recur after another order of the same customer (or hashes collide):
    # settle exactly those by their text.
    member = np.isin(head_key, ordered[1:][repeated])
    flags[heads[~member]] = True
    m = heads[member]
    text_code, dictionary = _dictionary_codes(strings_at(m))
    _, first = np.unique(code[m] * (len(dictionary) + 1) + text_code, return_index=True)
    flags[m[first]] = True
    return flags


def _stable_order_by(major: np.ndarray) -> np.ndarray:
    """A stable permutation sorting the non-negative int64 ``major``.

    Packs ``major`` and the row position into one int64 when they fit, because
    sorting values is several times faster than ``argsort``.
    """
    n = len(major)
    if n == 0:
        return np.empty(0, dtype=_I64)
    row_bits = max(int(n - 1).bit_length(), 1)
    major_bits = max(int(major.max()).bit_length(), 1)
    if row_bits + major_bits <= 63:
        packed = (major << row_bits) | np.arange(n, dtype=_I64)
        packed.sort()
        return packed & ((1 << row_bits) - 1)
    return np.argsort(major, kind="stable").astype(_I64)


def _type_codes(values: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Event type codes (rank of the name among the sorted distinct names) and names.

    Nulls get the code ``len(names)`` (ignored). Codes are ``uint8`` when they fit.
    """
    chunks = pc.dictionary_encode(values).chunks
    found = [[str(v) for v in chunk.dictionary.to_pylist()] for chunk in chunks]
    names = sorted({name for names_in_chunk in found for name in names_in_chunk})
    rank = {name: k for k, name in enumerate(names)}
    dtype = np.uint8 if len(names) < 255 else np.int32
    out = np.empty(len(values), dtype=dtype)
    pos = 0
    for chunk, names_in_chunk in zip(chunks, found, strict=True):
        lut = np.array([rank[v] for v in names_in_chunk] + [len(names)], dtype=dtype)
        indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        out[pos : pos + len(chunk)] = lut[indices]
        pos += len(chunk)
    return out, names


def _time_order_within_customer(code: np.ndarray, t_us: np.ndarray) -> np.ndarray | None:
    """A permutation sorting events of one type by (customer, time), or None if sorted.

    Event logs usually arrive grouped by customer in time order (then nothing is
    sorted) or in time order; then a stable sort by customer alone is enough, and
    customer and row position fit in one int64 whose values sort several times faster
    than any ``argsort``. The time order is verified; otherwise a full ``lexsort`` runs.
    """
    n = len(code)
    if n < 2:
        return None
    step = np.diff(code)
    if int(step.min()) >= 0 and not np.any((step == 0) & (np.diff(t_us) < 0)):
        return None
    del step
    order = _stable_order_by(code)
    c = code[order]
    t = t_us[order]
    if not bool(np.any((c[1:] == c[:-1]) & (t[1:] < t[:-1]))):
        return order
    return np.lexsort((t_us, code)).astype(_I64)


def _release_arrow_memory() -> None:
    """Hand pages Arrow freed back to the system: numpy allocates elsewhere, so pages
    kept for Arrow's reuse would only add to the peak of the build that follows."""
    pa.default_memory_pool().release_unused()


def _load_malloc_trim() -> Callable[[int], object] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_freed_memory() -> None:
    """Hand the memory a cutoff's temporaries used back to the system.

    glibc serves arrays below its mmap threshold (which rises up to 32 MiB after large
    frees) from heaps and returns only a heap's top, so freed temporaries would stay
    resident below arrays still live (~0.15x the events by the last of 12 cutoffs);
    ``malloc_trim`` returns those free pages too (about 10 ms a call).
    """
    _release_arrow_memory()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _micros(values: pd.Series) -> np.ndarray:
    """Microseconds since the epoch of a UTC timestamp column (no copy when possible)."""
    return np.asarray(values.to_numpy(dtype="datetime64[us]")).view(_I64)


def _prefix_sum(values: np.ndarray, dtype: Any = _I64) -> np.ndarray:
    out = np.empty(len(values) + 1, dtype=dtype)
    out[0] = 0
    np.cumsum(values, out=out[1:])
    return out


class PreparedEvents:
    """Customers and events coded and sorted once, ready for any number of cutoffs.

    Build with :func:`prepare_events`. The order and category structures of a type
    are built on first use and kept, so repeated calls do not redo them.
    """

    def __init__(self, customers: pd.DataFrame, events: pd.DataFrame) -> None:
        check_customers(customers)
        _check_events(events)
        ids = _to_arrow(customers["customer_id"])
        order_c = pc.sort_indices(ids).to_numpy()
        if bool(np.all(order_c[1:] > order_c[:-1])):  # in id order already: no copy
            self.customers = customers.reset_index(drop=True)
        else:
            self.customers = customers.iloc[order_c].reset_index(drop=True)
        sorted_ids = ids.take(pa.array(order_c)).combine_chunks()
        self._sorted_ids = sorted_ids.cast(pa.large_string())
        self._attribute_codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self.n_customers = len(self.customers)
        self.signup_us = _micros(self.customers["signup_at"])
        self._events = events
        self._typed: dict[str, _Typed] = {}
        self._days: _Days | None = None
        self._orders_cs: np.ndarray | None = None
        self._groups: dict[str, _Groups] = {}

        # Event types are coded on another core while this one codes customers (both
        # are Arrow hash lookups that release the GIL).
        typing = _BACKGROUND.submit(_type_codes, _to_arrow(events["event_type"]))
        heads, head_codes = _customer_runs(_to_arrow(events["customer_id"]), sorted_ids)
        t_all = _micros(events["occurred_at"])
        type_code, type_names = typing.result()
        self.base_sec = int(t_all.min()) // SEC_US if len(t_all) else 0
        span = (int(t_all.max()) // SEC_US - self.base_sec) if len(t_all) else 0
        if span >= _REL_MAX:
            raise FeaturesError(
                "Expected events to span less than 136 years. "
                f"Got {span / DAY_S / 365.25:.0f} years."
            )
        self.event_types = tuple(type_names)
        run_length = np.diff(np.append(heads, len(t_all)))
        if bool(np.any(head_codes < 0)):  # events of unknown customers are ignored
            type_code[np.repeat(head_codes < 0, run_length)] = len(type_names)
        known = head_codes[head_codes >= 0]
        # The fact store's order (each customer one run, in id order, in time order):
        # every type's events are then already in (customer, time) order.
        grouped = len(heads) < len(t_all) and bool(np.all(known[1:] > known[:-1]))
        if grouped:
            backwards = np.flatnonzero(t_all[1:] < t_all[:-1]) + 1
            grouped = bool(np.all(np.isin(backwards, heads, assume_unique=True)))
            del backwards
        code = None if grouped else np.repeat(head_codes, run_length)
        del run_length
        run_bounds = np.append(heads, len(t_all))
        row_dtype = np.int32 if len(t_all) < 2**31 else _I64
        self.index_dtype = row_dtype

        def rows_of(k: int) -> Callable[[], np.ndarray]:
            return lambda: np.flatnonzero(type_code == k).astype(row_dtype)

        def split(k: int) -> _Typed:
            """The events of type ``k`` in (customer, time) order."""
            rows = np.flatnonzero(type_code == k)
            t = t_all[rows]
            if code is None:
                per_run = np.diff(np.searchsorted(rows, run_bounds))
                c = np.repeat(head_codes, per_run)
                counts = np.zeros(self.n_customers, dtype=_I64)
                keep = head_codes >= 0
                counts[head_codes[keep]] = per_run[keep]
                starts = _prefix_sum(counts)
            else:
                c = code[rows]
                order = _time_order_within_customer(c, t)
                if order is not None:
                    rows, c, t = rows[order], c[order], t[order]
                starts = np.searchsorted(c, np.arange(self.n_customers + 1, dtype=_I64))
            key = np.floor_divide(t, SEC_US)
            # Whole-second times (the usual case) are read off the key: no copy kept.
            whole_seconds = bool(np.array_equal(key * SEC_US, t))
            key -= self.base_sec
            key |= np.left_shift(c, 32, out=c)
            return _Typed(
                key,
                starts,
                self.base_sec,
                t_us=None if whole_seconds else t,
                # In the fact store's order a type's rows are found again on demand.
                rows=None if code is None else rows.astype(row_dtype),
                find_rows=rows_of(k) if code is None else None,
            )

        # Purchases first: telling orders apart is the slowest step of the RFM family
        # and runs mostly without the GIL, on another core while the other types are
        # split.
        if "purchase" in type_names:
            self._typed["purchase"] = split(type_names.index("purchase"))
        self._order_flags: Future[np.ndarray] | None = _BACKGROUND.submit(self._new_order_flags)
        for k, name in enumerate(type_names):
            if name != "purchase":
                self._typed[name] = split(k)
        _release_arrow_memory()

    @property
    def events(self) -> pd.DataFrame:
        """The events frame this was prepared from (``typed(t).rows`` index into it)."""
        return self._events

    def typed(self, event_type: str) -> _Typed:
        """The sorted events of ``event_type`` (empty when there are none)."""
        found = self._typed.get(event_type)
        if found is None:
            empty = np.empty(0, dtype=_I64)
            found = _Typed(
                empty,
                np.zeros(self.n_customers + 1, dtype=_I64),
                self.base_sec,
                t_us=empty,
                rows=empty,
            )
            self._typed[event_type] = found
        return found

    def amounts(self, event_type: str) -> tuple[np.ndarray, np.ndarray]:
        """(prefix sums of fixed-point amounts, amounts + sentinel) of ``event_type``."""
        typed = self.typed(event_type)
        if typed.amount_cs is None or typed.amount is None:
            column = self._events["amount"]
            values = (  # the frame's own array when it is float64 already (no copy)
                column.to_numpy()
                if column.dtype == np.float64
                else column.to_numpy(dtype=np.float64, na_value=np.nan)
            )
            amount = np.nan_to_num(values[typed.rows_now()], nan=0.0)
            typed.amount_cs = _prefix_sum(np.rint(amount * AMOUNT_SCALE).astype(_I64))
            typed.amount = np.append(amount, 0.0)
        return typed.amount_cs, typed.amount

    def _codes_of(self, typed: _Typed) -> np.ndarray:
        return np.repeat(np.arange(self.n_customers, dtype=_I64), np.diff(typed.starts))

    def order_counts(self) -> np.ndarray:
        """Prefix count (over sorted purchases) of purchases opening a new order."""
        if self._orders_cs is None:
            if self._order_flags is None:
                raise FeaturesError("Expected order flags to be computed once. Got none.")
            self._orders_cs = _prefix_sum(self._order_flags.result(), self.index_dtype)
            self._order_flags = None
        return self._orders_cs

    def _new_order_flags(self) -> np.ndarray:
        """Per sorted purchase: True if it opens an order new to its customer.

        A purchase without ``order_id`` is an order of its own. Order ids are compared
        by a 64-bit hash of their text, and every equality the hash suggests is
        confirmed on the text itself, so the result is exact; no id is materialised
        as a Python object and only ids sharing a hash are dictionary-encoded.
        """
        p = self.typed("purchase")
        if not len(p):
            return np.zeros(0, dtype=bool)
        order_ids = self._events["order_id"]
        rows = p.rows_now()
        ascending = bool(np.all(rows[1:] > rows[:-1]))
        mask = np.zeros(len(order_ids), dtype=bool)
        mask[rows] = True
        hashes, nulls = _string_hashes(_to_arrow(order_ids).filter(pa.array(mask)))
        del mask
        if not ascending:  # back from row order to (customer, time) order
            back = np.argsort(rows, kind="stable")
            hashes[back], nulls[back] = hashes.copy(), nulls.copy()
        flags = _first_of_order(
            self._codes_of(p), hashes, nulls, lambda at: _take(order_ids, rows[at])
        )
        _release_arrow_memory()
        return flags

    def days(self) -> _Days:
        """Distinct purchase days per customer (built on first use)."""
        if self._days is None:
            p = self.typed("purchase")
            code = self._codes_of(p).astype(np.int32)
            # UTC days start at whole seconds: the floored second gives the day exactly.
            day = p.seconds_at(slice(None))
            day += self.base_sec
            day //= DAY_S
            day = day.astype(np.int32)
            flag = np.ones(len(p), dtype=bool)
            flag[1:] = (code[1:] != code[:-1]) | (day[1:] != day[:-1])
            d_code, d_day = code[flag], day[flag]
            del code, day
            first = np.ones(len(d_code), dtype=bool)
            first[1:] = d_code[1:] != d_code[:-1]
            gap = np.zeros(len(d_code), dtype=np.int32)
            gap[1:] = d_day[1:] - d_day[:-1]
            gap[first] = 0
            wide = gap.astype(_I64)
            self._days = _Days(
                row_cs=_prefix_sum(flag, self.index_dtype),
                code=d_code,
                day=d_day,
                gap=gap,
                gap_sq_cs=_prefix_sum(wide * wide),
            )
        return self._days

    def groups(self, event_type: str) -> _Groups:
        """Events of ``event_type`` grouped by (customer, category) (built on first use)."""
        found = self._groups.get(event_type)
        if found is not None:
            return found
        typed = self.typed(event_type)
        code = self._codes_of(typed)
        raw, dictionary = _dictionary_codes(_take(self._events["category"], typed.rows_now()))
        labels = np.asarray(dictionary.to_pylist(), dtype=object)
        rank = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
        remap = np.empty(len(labels), dtype=_I64)
        remap[rank] = np.arange(len(labels), dtype=_I64)
        keep = np.flatnonzero(raw >= 0)
        cat = remap[raw[keep]]
        g_code = code[keep]
        t = typed.seconds_at(keep).astype(np.uint32)
        cat_bits = max(len(labels) - 1, 1).bit_length()
        order = _stable_order_by((g_code << cat_bits) | cat)
        g_code, cat, t = g_code[order], cat[order], t[order]
        n = len(t)
        new = np.ones(n, dtype=bool)
        new[1:] = (g_code[1:] != g_code[:-1]) | (cat[1:] != cat[:-1])
        starts = np.flatnonzero(new)
        group_code = g_code[starts]
        run_new = np.ones(len(starts), dtype=bool)
        run_new[1:] = group_code[1:] != group_code[:-1]
        found = _Groups(
            seconds=t,
            bounds=np.append(starts, n).astype(_I64),
            code=group_code.astype(np.int32),
            cat=cat[starts].astype(np.int32),
            run_starts=np.flatnonzero(run_new).astype(_I64),
            labels=labels[rank] if len(labels) else labels,
        )
        self._groups[event_type] = found
        _release_arrow_memory()
        return found

    def build_features(
        self,
        as_of: AsOf | Sequence[AsOf],
        *,
        spec: FeatureSpec | None = None,
        on_cutoff: Callable[[pd.Timestamp], None] | None = None,
        release: bool = True,
    ) -> pd.DataFrame:
        """Features as of one date, or a long table over several dates.

        Args:
            as_of: A cutoff, or a list of them (then the result has an ``as_of`` column
                second and is ordered by ``as_of``, then ``customer_id``).
            spec: The feature spec (default: the shipped one).
            on_cutoff: Called after each cutoff is done (progress display).
            release: Drop the structures only some families read (purchase days,
                category groups, amount sums; ~0.1x the events) at the last cutoff,
                right after their last reader, which lowers the peak; a later call
                builds them again (about a second for 1M customers). Pass ``False``
                when calling again, one date at a time.

        Raises:
            FeaturesError: A cutoff is not a whole-second date/time.
            SpecError: The spec names an attribute the customers table lacks.
        """
        spec = spec or default_spec()
        self._check_spec(spec)
        many = _is_many(as_of)
        if many:
            cutoffs = sorted({normalize_as_of(v) for v in as_of})  # type: ignore[union-attr]
            if not cutoffs:
                raise FeaturesError("Expected at least one as_of date. Got an empty list.")
        else:
            cutoffs = [normalize_as_of(as_of)]  # type: ignore[arg-type]
        catalog = feature_catalog(spec)
        # Sizes now, customer codes one cutoff at a time.
        sizes = [int(np.count_nonzero(self.signup_us < ts.value // 1000)) for ts in cutoffs]
        total = sum(sizes)
        # Every output column is allocated once at its full length and filled cutoff by
        # cutoff, then handed to the frame without a copy: no per-cutoff frames to
        # concatenate, no block consolidation (both would copy the whole output).
        arrays: dict[str, np.ndarray] = {
            info.name: np.empty(total, dtype=info.dtype)
            for info in catalog
            if info.dtype in _NUMPY_DTYPES
        }
        chunks: dict[str, list[pa.Array]] = {
            name: [] for name in ["customer_id"] + [i.name for i in catalog if i.dtype == "string"]
        }
        as_of_column: Any = None
        if many:  # built first: its conversions copy, which would add to the final peak
            stamps = np.array([ts.value // 1000 for ts in cutoffs], dtype="datetime64[us]")
            as_of_index = pd.DatetimeIndex(np.repeat(stamps, sizes)).tz_localize("UTC")
            as_of_column = as_of_index.astype(TIMESTAMP_DTYPE).array
            del as_of_index
        # Category features: codes filled like numbers, categories fixed per column.
        coded: dict[str, tuple[np.ndarray, pd.Index]] = {}
        pos = 0
        for k, ts in enumerate(cutoffs):
            codes = self._codes_at(ts)
            end = pos + len(codes)
            missing = {"customer_id"} | {info.name for info in catalog}
            # Column groups are copied out as soon as they are computed, so a cutoff
            # holds at most one group of full-length temporaries.
            last = k == len(cutoffs) - 1
            # The last of several cutoffs fills the output on top of everything else:
            # return freed temporaries after each column group (one-cutoff builds peak
            # far lower and skip the cost).
            trim_groups = last and len(cutoffs) > 1
            for group in self._column_groups(ts, codes, spec, last=release and last):
                for name, values in group.items():
                    out = arrays.get(name)
                    if out is not None:
                        _fill(out, pos, end, values, name)
                    elif isinstance(values, _Coded):
                        if name not in coded:
                            column = np.empty(total, dtype=values.codes.dtype)
                            coded[name] = (column, values.categories)
                        _fill(coded[name][0], pos, end, values.codes, name)
                    elif name in chunks:
                        chunks[name].extend(_string_chunks(values))
                    missing.discard(name)
                del group
                if trim_groups:
                    _release_freed_memory()
            if missing:
                raise FeaturesError(
                    f"Expected the feature spec to yield every catalogued feature. "
                    f"Got none for {sorted(missing)}."
                )
            pos = end
            if len(cutoffs) > 1:
                _release_freed_memory()
            if on_cutoff:
                on_cutoff(ts)
        data: dict[str, Any] = {"customer_id": _string_column(chunks.pop("customer_id"))}
        if many:
            data["as_of"] = as_of_column
        for info in catalog:
            found = arrays.get(info.name)
            if found is not None:
                data[info.name] = found
            elif info.name in coded:
                codes, categories = coded.pop(info.name)
                data[info.name] = pd.Categorical.from_codes(
                    codes, dtype=pd.CategoricalDtype(categories, ordered=False), validate=False
                )
            else:
                data[info.name] = _string_column(chunks.pop(info.name))
        return pd.DataFrame(data, copy=False)

    def _check_spec(self, spec: FeatureSpec) -> None:
        if not spec.has("attributes"):
            return
        a = spec.attributes
        wanted = list(a.columns) + ([a.birth_year_column] if a.birth_year_column else [])
        missing = [c for c in wanted if c not in self.customers.columns]
        if missing:
            raise SpecError(
                f"The feature spec's attributes {missing} must be columns of the customers "
                f"table. Got columns {list(self.customers.columns)}: declare them in "
                "tagsmith.yaml or remove them from features.yaml."
            )

    def _codes_at(self, ts: pd.Timestamp) -> np.ndarray:
        """Codes (ascending, i.e. in ``customer_id`` order) of customers signed up before ``ts``."""
        return np.flatnonzero(self.signup_us < ts.value // 1000).astype(_I64)

    def _column_groups(
        self, ts: pd.Timestamp, codes: np.ndarray, spec: FeatureSpec, *, last: bool
    ) -> Iterator[dict[str, Any]]:
        """The columns of ``spec`` (and ``customer_id``) at cutoff ``ts`` for ``codes``,
        a few at a time (by family; windowed families by event type).

        With ``last`` (the last cutoff of a releasing call), structures only some
        families read (category groups, purchase days, amount sums) are dropped right
        after their last reader, before the remaining columns fill the output; a later
        call builds them again.
        """
        cut = _Cutoff(self, ts.value // 1000, codes)
        yield {"customer_id": self._sorted_ids.take(pa.array(codes))}
        if last and self._order_flags is None:
            # Order ids are ready (an earlier cutoff used them): the families with the
            # largest temporaries (rhythm, preference, engagement, rfm) go first, while
            # most of this
            # cutoff's output is still untouched, and the per-call structures are
            # dropped as soon as their readers are done.
            if spec.has("rhythm"):
                yield from cut.rhythm(spec)
            if spec.has("rfm"):
                cut.purchase_day_counts()  # all rfm needs of the purchase days
            self._days = None
            if spec.has("preference"):
                yield cut.preference(spec.preference.event_type)
            self._groups.clear()
            if spec.has("engagement"):
                yield from cut.engagement(spec)
            if spec.has("activity"):
                yield cut.activity()
            if spec.has("rfm"):
                yield cut.rfm()
            cut.forget_customer_arrays()
            yield from self._windowed_groups(cut, spec, release=True)
            if spec.has("attributes"):
                yield cut.attributes(spec, ts)
            return
        # Families reading per-call structures (purchase days, category groups) first,
        # so that at the last cutoff those are dropped before most columns fill the
        # output; families needing order ids come late: those are hashed in the
        # background during the first cutoff.
        if spec.has("rhythm"):
            yield from cut.rhythm(spec)
        if last:
            if spec.has("rfm"):
                cut.purchase_day_counts()  # all rfm needs of the purchase days
            self._days = None
        if spec.has("preference"):
            yield cut.preference(spec.preference.event_type)
        if last:
            self._groups.clear()
        yield from self._windowed_groups(cut, spec, release=False)
        if spec.has("attributes"):
            yield cut.attributes(spec, ts)
        if spec.has("rfm"):
            yield cut.rfm()
        if last:  # windowed and rfm were the readers of amount sums
            self._drop_amounts(self.event_types)
        if spec.has("activity"):
            yield cut.activity()
        if spec.has("engagement"):
            yield from cut.engagement(spec)

    def _windowed_groups(
        self, cut: _Cutoff, spec: FeatureSpec, *, release: bool
    ) -> Iterator[dict[str, Any]]:
        """Windowed and trend columns per type; with ``release``, each type's amount
        sums are dropped after its columns (their other reader, rfm, came first)."""
        if not (spec.has("windowed") or spec.has("trend")):
            if release:
                self._drop_amounts(self.event_types)
            return
        for event_type in spec.event_types:
            yield from cut.windowed(spec, event_type)
            if release:
                self._drop_amounts([event_type])
                cut.forget_ends(event_type)  # every other reader came first
        if release:
            self._drop_amounts(self.event_types)

    def _drop_amounts(self, event_types: Iterable[str]) -> None:
        for event_type in event_types:
            typed = self._typed.get(event_type)
            if typed is not None:
                typed.amount_cs = typed.amount = None

    def birth_years(self, column: str) -> np.ndarray:
        """The customers' ``column`` as float64 years (NaN when missing or not a number)."""
        return pd.to_numeric(self.customers[column], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )

    def attribute_codes(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """The customers' ``column`` as (category position per customer code, -1 when
        missing; the categories: its distinct values as strings, sorted), coded once."""
        found = self._attribute_codes.get(column)
        if found is None:
            values = self.customers[column].astype("string")
            # Categories of pandas' default string dtype: what a Parquet snapshot of the
            # frame reads back as.
            categories = pd.Index(values.dropna().unique(), dtype="str").sort_values()
            codes = categories.get_indexer(values)
            found = (codes.astype(_code_dtype(len(categories))), categories)
            self._attribute_codes[column] = found
        return found


_NUMPY_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool"})


def _fill(out: np.ndarray, start: int, end: int, values: Any, name: str) -> None:
    """Write one cutoff's ``values`` into ``out[start:end]``, the declared dtype.

    Widening is always allowed; floats may be rounded to a narrower float (the
    catalogue's declared precision) and integers narrowed when every value fits.
    """
    values = np.asarray(values)
    src, dst = values.dtype, out.dtype
    if np.can_cast(src, dst, casting="safe") or (src.kind == "f" and dst.kind == "f"):
        out[start:end] = values
        return
    if src.kind in "iu" and dst.kind == "i":
        info = np.iinfo(dst)
        if len(values) and (int(values.min()) < info.min or int(values.max()) > info.max):
            raise FeaturesError(
                f"Feature '{name}' must fit in {dst}. Got values in "
                f"[{int(values.min())}, {int(values.max())}]."
            )
        out[start:end] = values
        return
    raise FeaturesError(f"Feature '{name}' must be computed as {dst}. Got {src} instead.")


@dataclass(frozen=True)
class _Coded:
    """One cutoff's values of a ``category`` feature: positions in ``categories``
    (-1 for null)."""

    codes: np.ndarray
    categories: pd.Index


def _code_dtype(n_categories: int) -> Any:
    """The smallest signed integer dtype holding codes -1 .. n_categories - 1."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories <= np.iinfo(dtype).max:
            return dtype
    return _I64


def _string_chunks(values: Any) -> list[pa.Array]:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    arr = arr.cast(pa.large_string())
    return list(arr.chunks) if isinstance(arr, pa.ChunkedArray) else [arr]


def _string_column(chunks: list[pa.Array]) -> pd.api.extensions.ExtensionArray:
    """A pandas ``string`` column over the Arrow ``chunks`` (no copy of the text)."""
    return pd.array(pa.chunked_array(chunks, type=pa.large_string()), dtype="string")


def _is_many(as_of: Any) -> bool:
    return isinstance(as_of, (list, tuple, set, pd.Index, pd.Series, np.ndarray))


class _Cutoff:
    """Feature computations at one cutoff for the customers ``codes``."""

    def __init__(self, prep: PreparedEvents, cut_us: int, codes: np.ndarray) -> None:
        self.p = prep
        self.cut_us = cut_us
        self.rel = cut_us // SEC_US - prep.base_sec
        self.codes = codes
        self._ends: dict[tuple[str, int], np.ndarray] = {}
        self._tenure: np.ndarray | None = None
        self._n_days: np.ndarray | None = None

    def start(self, event_type: str) -> np.ndarray:
        return self.p.typed(event_type).starts[self.codes]

    def end(self, event_type: str, back_days: int = 0) -> np.ndarray:
        """Per customer, the end of its events of ``event_type`` before cut - back_days."""
        k = (event_type, back_days)
        found = self._ends.get(k)
        if found is None:
            typed = self.p.typed(event_type)
            rel = min(max(self.rel - back_days * DAY_S, 0), _REL_MAX)
            found = np.searchsorted(typed.key, (self.codes << 32) | rel, side="left").astype(
                self.p.index_dtype
            )
            self._ends[k] = found
        return found

    def count(self, event_type: str, back_days: int = 0) -> np.ndarray:
        return (
            self.end(event_type) - self.end(event_type, back_days)
            if back_days
            else (self.end(event_type) - self.start(event_type))
        )

    def amount(self, event_type: str, back_days: int = 0) -> np.ndarray:
        cs = self.p.amounts(event_type)[0]
        lo = self.end(event_type, back_days) if back_days else self.start(event_type)
        return (cs[self.end(event_type)] - cs[lo]) / AMOUNT_SCALE

    def days_since_last(self, event_type: str) -> np.ndarray:
        typed = self.p.typed(event_type)
        e, s = self.end(event_type), self.start(event_type)
        out = np.full(len(self.codes), np.nan)
        has = e > s
        out[has] = (self.cut_us - typed.t_at(e[has] - 1)) / DAY_US
        return out

    def tenure(self) -> np.ndarray:
        if self._tenure is None:
            self._tenure = (self.cut_us - self.p.signup_us[self.codes]) / DAY_US
        return self._tenure

    def rfm(self) -> dict[str, Any]:
        p = self.p.typed("purchase")
        s, e = self.start("purchase"), self.end("purchase")
        orders_cs = self.p.order_counts()
        orders = orders_cs[e] - orders_cs[s] if len(p) else np.zeros(len(s), dtype=_I64)
        n_days = self.purchase_day_counts()
        total = self.amount("purchase") - self.amount("refund")
        mean = np.full(len(s), np.nan)
        np.divide(total, orders, out=mean, where=orders > 0)
        maximum = np.full(len(s), np.nan)
        has = e > s
        if has.any():
            idx = np.empty(2 * int(has.sum()), dtype=_I64)
            idx[0::2], idx[1::2] = s[has], e[has]
            maximum[has] = np.maximum.reduceat(self.p.amounts("purchase")[1], idx)[0::2]
        return {
            "recency_days": self.days_since_last("purchase"),
            "never_purchased": ~has,
            "frequency_orders": orders,
            "frequency_days": n_days,
            "monetary_total": total,
            "monetary_mean": mean,
            "monetary_max": maximum,
        }

    def windowed(self, spec: FeatureSpec, etype: str) -> Iterator[dict[str, Any]]:
        """Windowed and trend columns of ``etype``, one window at a time."""
        amount_types = set(spec.amount_event_types)
        for w in spec.windows:
            cols: dict[str, Any] = {}
            last = self.count(etype, w)
            if spec.has("windowed"):
                cols[f"{etype}_count_{w}d"] = last
                if etype in amount_types:
                    cols[f"{etype}_amount_{w}d"] = self.amount(etype, w)
            if spec.has("trend"):
                prev = self.end(etype, w) - self.end(etype, 2 * w)
                both = last + prev
                prev -= last  # previous - last
                np.negative(prev, out=prev)
                # Divided in float64, stored at the catalogue's float32: no wide copy.
                trend = np.zeros(len(last), dtype=np.float32)
                np.divide(prev, both, out=trend, where=both > 0)
                cols[f"{etype}_count_trend_{w}d"] = trend
                del prev, both
            del last
            # A window's bounds serve only its own columns and the next trend.
            for key in [k for k in self._ends if k[0] == etype and 0 < k[1] < w]:
                del self._ends[key]
            yield cols
        for key in [k for k in self._ends if k[0] == etype and k[1]]:
            del self._ends[key]

    def forget_customer_arrays(self) -> None:
        """Drop the cached tenure and purchase-day counts (their readers are done)."""
        self._tenure = self._n_days = None

    def forget_ends(self, event_type: str) -> None:
        """Drop the cached window bounds of ``event_type`` (its readers are done)."""
        for key in [k for k in self._ends if k[0] == event_type]:
            del self._ends[key]

    def purchase_day_counts(self) -> np.ndarray:
        """Distinct purchase days per customer before the cutoff (kept for the cutoff)."""
        if self._n_days is None:
            if len(self.p.typed("purchase")):
                row_cs = self.p.days().row_cs
                self._n_days = row_cs[self.end("purchase")] - row_cs[self.start("purchase")]
            else:
                self._n_days = np.zeros(len(self.codes), dtype=_I64)
        return self._n_days

    def _day_rows_in_prefix(self) -> tuple[_Days, np.ndarray, np.ndarray, np.ndarray]:
        """Purchase-day rows before the cutoff: (days, mask, first row, row count)."""
        days = self.p.days()
        if not len(self.p.typed("purchase")):
            zeros = np.zeros(len(self.codes), dtype=_I64)
            return days, np.zeros(0, dtype=bool), zeros, zeros
        ds = days.row_cs[self.start("purchase")]
        end_by_code = days.row_cs[self.p.typed("purchase").starts[:-1]]
        end_by_code[self.codes] = ds + self.purchase_day_counts()
        mask = np.arange(len(days.code), dtype=days.row_cs.dtype) < end_by_code[days.code]
        return days, mask, ds, self.purchase_day_counts()

    def rhythm(self, spec: FeatureSpec) -> Iterator[dict[str, Any]]:
        """The rhythm columns in three groups (their temporaries span purchase days)."""
        r = spec.rhythm
        n = len(self.codes)
        days, mask, ds, nd = self._day_rows_in_prefix()
        gap_mean = np.full(n, np.nan)
        gap_median = np.full(n, np.nan)
        gap_std = np.full(n, np.nan)
        multi = nd >= 2
        if multi.any():
            first_day = days.day[ds[multi]]
            last_day = days.day[ds[multi] + nd[multi] - 1]
            n_gaps = nd[multi] - 1
            mean = (last_day - first_day) / n_gaps
            sq = days.gap_sq_cs[ds[multi] + nd[multi]] - days.gap_sq_cs[ds[multi]]
            gap_mean[multi] = mean
            gap_std[multi] = np.sqrt(np.maximum(sq / n_gaps - mean * mean, 0.0))
            with_gap = mask & (days.gap > 0)  # all but each customer's first day
            packed = (days.code[with_gap].astype(_I64) << 24) | np.minimum(
                days.gap[with_gap], 2**24 - 1
            )
            del with_gap
            packed.sort()
            packed &= 2**24 - 1  # the gaps, per customer in ascending order
            offsets = np.concatenate([[0], np.cumsum(n_gaps)[:-1]])
            gap_median[multi] = (
                packed[offsets + (n_gaps - 1) // 2] + packed[offsets + n_gaps // 2]
            ) / 2.0
            del packed
        recency = self.days_since_last("purchase")
        lateness = np.full(n, np.nan)
        np.divide(recency, gap_mean, out=lateness, where=multi & (gap_mean > 0))
        lateness[multi & (gap_mean == 0)] = np.nan
        yield {
            "gap_mean_days": gap_mean,
            "gap_median_days": gap_median,
            "gap_std_days": gap_std,
            "lateness": lateness,
        }
        del gap_mean, gap_median, gap_std, lateness, recency

        tenure = self.tenure()
        last_day_no = -(-self.cut_us // DAY_US) - 1  # the last UTC day before the cutoff
        age = last_day_no - days.day
        weeks_avail = np.clip(np.ceil(tenure / 7), 1, r.active_weeks)
        week = age // 7
        in_weeks = mask & (week < r.active_weeks)
        new_week = np.ones(len(week), dtype=bool)
        new_week[1:] = (week[1:] != week[:-1]) | (days.code[1:] != days.code[:-1])
        new_week &= in_weeks
        del week, in_weeks
        active = np.bincount(days.code[new_week], minlength=self.p.n_customers)
        del new_week
        yield {"active_week_share": np.minimum(active[self.codes] / weeks_avail, 1.0)}
        del active

        # Loyalty: x = purchase days per period over the customer's n_eff periods. The
        # periods with x > 0 are runs of equal (customer, period) among the day rows,
        # so sums of x and x**2 per customer need no customers x periods matrix.
        per_days = r.loyalty_period_days
        n_eff = np.clip(np.ceil(tenure / per_days), 1, r.loyalty_periods)
        n_eff_by_code = np.zeros(self.p.n_customers, dtype=np.int32)
        n_eff_by_code[self.codes] = n_eff
        period = age // per_days
        del age
        sel = np.flatnonzero(mask & (period < n_eff_by_code[days.code]))
        del n_eff_by_code, mask
        c, per = days.code[sel], period[sel]
        del sel, period
        new_run = np.ones(len(c), dtype=bool)
        new_run[1:] = (c[1:] != c[:-1]) | (per[1:] != per[:-1])
        heads = np.flatnonzero(new_run)
        x = np.diff(np.append(heads, len(c))).astype(np.float64)
        run_code = c[heads]
        del c, per, new_run, heads
        size = self.p.n_customers
        s1 = np.bincount(run_code, weights=x, minlength=size)[self.codes]
        s2 = np.bincount(run_code, weights=x * x, minlength=size)[self.codes]
        share = np.bincount(run_code, minlength=size)[self.codes] / n_eff
        # Population variance over n_eff periods, from integer sums (exact).
        x_mean = s1 / n_eff
        x_std = np.sqrt(np.maximum(n_eff * s2 - s1 * s1, 0.0)) / n_eff
        loyalty = np.zeros(n)
        pos = x_mean > 0
        loyalty[pos] = share[pos] / (1.0 + x_std[pos] / x_mean[pos])
        yield {"loyalty_score": loyalty}

    def activity(self) -> dict[str, Any]:
        n = len(self.codes)
        last = np.full(n, np.nan)
        for etype in self.p.event_types:
            since = self.days_since_last(etype)
            last = np.fmin(last, since)
        orders_cs = self.p.order_counts()
        if len(self.p.typed("purchase")):
            orders = orders_cs[self.end("purchase")] - orders_cs[self.start("purchase")]
        else:
            orders = np.zeros(n, dtype=_I64)
        browses = self.count("browse")
        b2p = np.full(n, np.nan)
        np.divide(orders, browses, out=b2p, where=browses > 0)
        refund_rate = np.full(n, np.nan)
        np.divide(self.count("refund"), orders, out=refund_rate, where=orders > 0)
        return {
            "tenure_days": self.tenure(),
            "days_since_last_activity": last,
            "browse_to_purchase": b2p,
            "refund_rate": refund_rate,
            "refund_count": self.count("refund"),
            "complaint_count": self.count("complaint"),
            "days_since_last_complaint": self.days_since_last("complaint"),
        }

    def _decayed(self, event_types: Sequence[str], taus: Sequence[int]) -> list[np.ndarray]:
        """Per time constant, the sum of exp(-age / tau) over ``event_types`` events."""
        sums = [np.zeros(len(self.codes)) for _ in taus]
        # Block buffers, reused: no allocation per block.
        micros, age, weight = np.empty(0, dtype=_I64), np.empty(0), np.empty(0)
        for etype in event_types:
            typed = self.p.typed(etype)
            s, e = self.start(etype), self.end(etype)
            has = np.flatnonzero(e > s)
            if not len(has):
                continue
            # A customer's events before the cutoff are one range [s, e) of the sorted
            # events: sum each range with one reduceat, no per-event customer codes, in
            # blocks of customers so that the temporaries stay small.
            s_has, e_has = s[has], e[has]
            first = 0
            while first < len(has):
                lo = int(s_has[first])
                stop = max(int(np.searchsorted(e_has, lo + _BLOCK_EVENTS, side="right")), first + 1)
                hi = int(e_has[stop - 1])
                m = hi - lo
                if m + 1 > len(age):  # + a sentinel: reduceat bounds may equal hi
                    micros, age, weight = np.empty(m, _I64), np.empty(m + 1), np.empty(m + 1)
                a, w = age[: m + 1], weight[: m + 1]
                typed.micros_until(self.cut_us, lo, hi, micros[:m])
                np.divide(micros[:m], DAY_US, out=a[:-1])
                np.maximum(a, 0.0, out=a)  # later events are outside every range
                a[-1] = 0.0
                bounds = np.empty(2 * (stop - first), dtype=_I64)
                bounds[0::2], bounds[1::2] = s_has[first:stop] - lo, e_has[first:stop] - lo
                for out, tau in zip(sums, taus, strict=True):
                    np.divide(a, -tau, out=w)
                    np.exp(w, out=w)
                    out[has[first:stop]] += np.add.reduceat(w, bounds)[0::2]
                first = stop
        return sums

    def engagement(self, spec: FeatureSpec) -> Iterator[dict[str, Any]]:
        """The engagement columns, a few at a time."""
        g = spec.engagement
        n = len(self.codes)
        exposure = np.maximum(self.tenure(), 1.0)
        rate_sum = np.zeros(n)
        for etype in g.event_types:
            rate = self.count(etype) / exposure
            rate_sum += rate
            recency = self.days_since_last(etype)
            ratio = np.full(n, np.nan)
            np.divide(
                self.count(etype, g.recent_days), rate * g.recent_days, out=ratio, where=rate > 0
            )
            self._ends.pop((etype, g.recent_days), None)
            yield {
                f"{etype}_recency_days": recency,
                f"{etype}_per_day": rate,
                f"{etype}_silence": recency * rate,
                f"{etype}_recent_ratio": ratio,
            }
            del rate, recency, ratio
        engaged = self._decayed(g.event_types, g.decay_days)
        bought = self._decayed(["purchase"], g.decay_days)
        for tau, decayed, purchases in zip(g.decay_days, engaged, bought, strict=True):
            ratio = np.full(n, np.nan)
            np.divide(decayed, rate_sum * tau, out=ratio, where=rate_sum > 0)
            yield {
                f"engagement_decayed_{tau}d": decayed,
                f"engagement_decayed_{tau}d_ratio": ratio,
                f"purchase_decayed_{tau}d": purchases,
            }
        del engaged, bought, rate_sum
        cols: dict[str, Any] = {}
        p = self.p.typed("purchase")
        s, e = self.start("purchase"), self.end("purchase")
        has = e > s
        per_day = np.full(n, np.nan)
        if has.any():
            orders_cs = self.p.order_counts()
            since_first = (self.cut_us - p.t_at(s[has])) / DAY_US
            per_day[has] = (orders_cs[e[has]] - orders_cs[s[has]]) / np.maximum(since_first, 1.0)
        recency = self.days_since_last("purchase")
        cols["purchase_per_day"] = per_day
        cols["purchase_silence"] = recency * per_day
        for etype, name in (("complaint", "complained"), ("refund", "refunded")):
            since = self.days_since_last(etype)
            cols[f"{name}_since_last_purchase"] = has & (since <= recency)
        yield cols

    def preference(self, event_type: str) -> dict[str, Any]:
        g = self.p.groups(event_type)
        size = self.p.n_customers
        seen = _prefix_sum(g.seconds < min(max(self.rel, 0), _REL_MAX), self.p.index_dtype)
        cnt = seen[g.bounds[1:]] - seen[g.bounds[:-1]]
        total = np.bincount(g.code, weights=cnt, minlength=size)
        distinct = np.bincount(g.code, weights=cnt > 0, minlength=size)
        share_in = np.zeros(len(cnt))
        np.divide(cnt, total[g.code], out=share_in, where=cnt > 0)
        h = np.zeros(len(cnt))
        pos = cnt > 0
        h[pos] = -share_in[pos] * np.log2(share_in[pos])
        entropy = np.bincount(g.code, weights=h, minlength=size)
        top_count = np.zeros(size, dtype=_I64)
        top_cat = np.full(size, -1, dtype=_I64)
        if len(cnt):
            top_count[g.code[g.run_starts]] = np.maximum.reduceat(cnt, g.run_starts)
            cand = np.flatnonzero((cnt == top_count[g.code]) & pos)
            first = np.ones(len(cand), dtype=bool)
            first[1:] = g.code[cand][1:] != g.code[cand][:-1]
            top_cat[g.code[cand[first]]] = g.cat[cand[first]]
        total_c = total[self.codes]
        has = total_c > 0
        top = pa.array(g.labels, type=pa.large_string()).take(
            pa.array(top_cat[self.codes], mask=~has)
        )
        share = np.full(len(self.codes), np.nan)
        share[has] = top_count[self.codes][has] / total_c[has]
        ent = np.where(has, entropy[self.codes], np.nan)
        return {
            "top_category": top,
            "top_category_share": share,
            "distinct_categories": distinct[self.codes].astype(_I64),
            "category_entropy": ent + 0.0,
        }

    def attributes(self, spec: FeatureSpec, ts: pd.Timestamp) -> dict[str, Any]:
        a = spec.attributes
        cols: dict[str, Any] = {}
        if a.birth_year_column:
            age = ts.year - self.p.birth_years(a.birth_year_column)[self.codes]
            known = ~np.isnan(age)
            band = np.searchsorted(a.age_bands, np.where(known, age, 0), side="right")
            labels = pd.Index(age_band_labels(a.age_bands), dtype="str")
            cols["age"] = age
            cols["age_band"] = _Coded(
                np.where(known, band, -1).astype(_code_dtype(len(labels))), labels
            )
        for column in a.columns:
            codes, categories = self.p.attribute_codes(column)
            cols[column] = _Coded(codes[self.codes], categories)
        return cols


def prepare_events(customers: pd.DataFrame, events: pd.DataFrame) -> PreparedEvents:
    """Code and sort canonical customers and events once, for many cutoffs.

    Events of customers not in ``customers`` are ignored.

    Raises:
        SchemaError: A table breaks the fact-tag contract.
    """
    return PreparedEvents(customers, events)


def build_features(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: AsOf | Iterable[AsOf],
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """Point-in-time features, one row per customer with ``signup_at < as_of``.

    Only events with ``occurred_at < as_of`` are used. With a list of cutoffs the
    result is a long table (``customer_id``, ``as_of``, features...), computed from one
    sort of the events. Rows are ordered by ``customer_id`` (within ``as_of``).

    Args:
        customers: Canonical customers table (:func:`features.schema.customers_frame`).
        events: Canonical events table (:func:`features.schema.events_frame`).
        as_of: Cutoff date/time (naive values are UTC) or a list of them.
        spec: Feature spec (default: ``features/default_spec.yaml``).

    Raises:
        SchemaError: A table breaks the fact-tag contract.
        FeaturesError: A cutoff is not a whole-second date/time.
        SpecError: The spec needs an attribute the customers table lacks.
    """
    return prepare_events(customers, events).build_features(as_of, spec=spec)  # type: ignore[arg-type]
