"""Posted customer and event records -> checked arrays (the live path's input step).

A request's records (``POST /score``, real-time events, a few customers read from the
fact store) become numpy and Arrow arrays directly, checked against the fact contract
with the messages the canonical frames give (``scoring.live.LiveScorer.events_frame``
builds its frame from the same arrays): no DataFrame, no pandas conversion per column.
Times are int64 microseconds since the epoch (UTC); naive values are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.coding import micros
from features.errors import SchemaError
from features.schema import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    EVENT_COLUMNS,
    MAX_AMOUNT,
    TIMESTAMP_DTYPE,
    FactsConfig,
)
from features.small_events import CustomerArrays, EventColumns

__all__ = [
    "NAT",
    "Record",
    "checked_events",
    "customer_arrays",
    "customer_ids",
    "event_columns",
    "event_fields",
    "frame_records",
    "from_micros",
    "micros_of",
    "strings",
]

Record = Mapping[str, Any]
NAT = np.iinfo(np.int64).min
_TEXT = pa.large_string()
# Event records as one Arrow struct array: the conversion runs in C, one pass (times
# apart: Arrow asks each aware datetime for its offset, ~20x slower than reading it).
_EVENT_STRUCT = pa.struct(
    [
        ("customer_id", _TEXT),
        ("event_type", _TEXT),
        ("amount", pa.float64()),
        ("category", _TEXT),
        ("product_id", _TEXT),
        ("order_id", _TEXT),
        ("quantity", pa.float64()),
    ]
)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as a request carries them (the inverse of the canonical frames):
    column name -> value, missing values (``NA``, ``NaT``, NaN) as ``None``, times as
    ``pd.Timestamp``. For tests, benchmarks and callers holding facts as frames.
    """
    return [
        {str(k): (None if v is pd.NA or v is pd.NaT or v != v else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def customer_ids(customers: Sequence[Record]) -> list[str]:
    """The customers' ids, checked: non-empty text, each once.

    Raises:
        SchemaError: An id is blank or repeated.
    """
    ids = [r.get("customer_id") for r in customers]
    if any(not isinstance(i, str) or not i.strip() for i in ids):
        raise SchemaError("Expected every customer to have a non-empty customer_id.")
    if len(set(ids)) != len(ids):
        raise SchemaError("Expected each customer once. Got a customer_id twice.")
    return ids  # type: ignore[return-value]  # every one checked to be a str


def customer_arrays(customers: Sequence[Record], facts: FactsConfig) -> CustomerArrays:
    """The customers' ids, signup times and attributes as arrays.

    Raises:
        SchemaError: An id is blank or repeated, or a value does not convert.
    """
    ids = customer_ids(customers)
    signup = micros_of([r.get("signup_at") for r in customers], "signup_at")
    attributes: dict[str, Any] = {}
    dtypes: dict[str, Any] = {}
    for spec in facts.attributes:
        values = [r.get(spec.name) for r in customers]
        dtypes[spec.name] = spec.dtype
        try:
            if spec.type == "date":
                attributes[spec.name] = micros_of(values, spec.name, nullable=True)
            elif spec.type in ("int", "float"):
                attributes[spec.name] = _numbers(values, spec.dtype)
            else:
                attributes[spec.name] = [
                    v if v is None or isinstance(v, str) else str(v) for v in values
                ]
        except (ValueError, TypeError, OverflowError) as exc:
            raise SchemaError(
                f"Attribute '{spec.name}' of customers must convert to {spec.dtype}: {exc}"
            ) from exc
    return CustomerArrays(ids, signup, attributes, dtypes)


def _numbers(values: list[Any], dtype: Any) -> np.ndarray:
    """Numbers of an int or float attribute as float64 (NaN: missing).

    Raises:
        ValueError, TypeError: A value is not a number (or, for an int attribute, not a
            whole number), as pandas' conversion reports it.
    """
    if all(v is None or (type(v) is int and -(2**53) < v < 2**53) for v in values):
        # The usual records (whole numbers, exact in float64): no pandas.
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="raise")
    checked = numbers.astype(dtype)  # an int attribute refuses 1.5
    return checked.to_numpy(dtype=np.float64, na_value=np.nan)


def event_fields(events: Sequence[Record]) -> dict[str, pa.Array]:
    """The event columns as Arrow arrays (times: UTC microseconds; naive means UTC).

    Records of datetimes, text and numbers convert in C in one pass; anything else
    (ISO text times, numbers as text, ...) goes through the per-column conversions.

    Raises:
        SchemaError: A value does not convert.
    """
    stamps = micros_of([r.get("occurred_at") for r in events], "occurred_at")
    times_us = pa.array(stamps.view("datetime64[us]"), pa.timestamp("us"))
    try:
        table = pa.array(list(events), type=_EVENT_STRUCT)
        return {"occurred_at": times_us} | {f.name: table.field(f.name) for f in _EVENT_STRUCT}
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    columns = {c: [r.get(c) for r in events] for c in EVENT_COLUMNS}
    out: dict[str, pa.Array] = {"occurred_at": times_us}
    for name in ("customer_id", "event_type", "category", "product_id", "order_id"):
        out[name] = pa.array(
            [v if v is None or isinstance(v, str) else str(v) for v in columns[name]], _TEXT
        )
    for name in ("amount", "quantity"):
        try:
            out[name] = pa.array(
                np.array([np.nan if v is None else v for v in columns[name]], dtype=np.float64)
            )
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"Column '{name}' of events must be numbers: {exc}") from exc
    return out


def checked_events(
    fields: Mapping[str, pa.Array], event_types: frozenset[str]
) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    """Check event fields against the contract: (event type code per event, the type
    names the codes index, times in us, amount and quantity as float64). Vectorised:
    a request of many customers' events loops over no event in Python.

    Raises:
        SchemaError: An event type is unknown, a time is missing, an amount is missing on
            a purchase or refund or out of range, or a quantity is out of range.
    """
    encoded = pc.dictionary_encode(fields["event_type"])
    names: list[str] = encoded.dictionary.to_pylist()
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), np.int64)
    allowed = np.array([n in event_types for n in names] + [False])  # last: null (-1)
    unknown = np.flatnonzero(~allowed[codes])
    if len(unknown):
        got = names[codes[unknown[0]]] if codes[unknown[0]] >= 0 else None
        raise SchemaError(
            f"Event {unknown[0]}: expected each event_type among {sorted(event_types)}. "
            f"Got {got!r}."
        )
    occurred = fields["occurred_at"]
    if occurred.null_count:
        raise SchemaError("Expected a time in every 'occurred_at'. Got a missing one.")
    t_us = np.asarray(occurred.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    numbers: dict[str, np.ndarray] = {}
    for name in ("amount", "quantity"):
        values = np.asarray(fields[name].to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.flatnonzero(~(np.isfinite(values) | np.isnan(values)) | (values < 0))
        if len(bad):
            raise SchemaError(
                f"Event {bad[0]}: column '{name}' of events must be finite numbers >= 0. "
                f"Got {float(values[bad[0]])!r}."
            )
        numbers[name] = values
    amount = numbers["amount"]
    required = np.array([n in AMOUNT_REQUIRED_EVENT_TYPES for n in names] + [False])
    missing = np.flatnonzero(required[codes] & np.isnan(amount))
    if len(missing):
        raise SchemaError(
            f"Event {missing[0]}: expected an amount on every purchase and refund event. "
            f"Got none on this {names[codes[missing[0]]]}."
        )
    too_large = np.flatnonzero(amount > MAX_AMOUNT)
    if len(too_large):  # the fact contract's upper bound (features.schema.check_amounts)
        raise SchemaError(
            f"Event {too_large[0]}: column 'amount' of events must be <= {MAX_AMOUNT:.0e}. "
            f"Got {float(amount[too_large[0]])!r}."
        )
    return codes, names, t_us, numbers


def event_columns(
    events: Sequence[Record], ids: Sequence[str], event_types: frozenset[str]
) -> EventColumns:
    """The events of the customers ``ids`` as arrays (events of other ids are kept
    with customer -1 and ignored by the index, as the batch index ignores them).

    Raises:
        SchemaError: The records break the fact contract.
    """
    fields = event_fields(events)
    codes, names, t_us, numbers = checked_events(fields, event_types)
    owners = pc.index_in(fields["customer_id"], value_set=pa.array(list(ids), _TEXT))
    customer = np.asarray(pc.fill_null(owners, -1).to_numpy(zero_copy_only=False), np.int64)
    return EventColumns(
        customer=customer,
        t_us=t_us,
        type_code=codes,
        type_names=names,
        amount=numbers["amount"],
        category=fields["category"],
        order_id=fields["order_id"],
    )


def strings(values: list[Any]) -> pd.arrays.ArrowStringArray:
    """A pandas ``string`` column of ``values`` (``None`` stays missing)."""
    text = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pd.arrays.ArrowStringArray(pa.array(text, _TEXT))


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def _micros(value: datetime | None) -> int:
    """Microseconds since the epoch of a datetime (naive: UTC); ``None``: NaT.

    Read in microseconds, not through ``Timestamp.value`` (nanoseconds), so dates
    past 2262 or before 1677 convert (the as-of range check refuses them later with
    a clear message) instead of overflowing.
    """
    if value is None:
        return NAT
    if type(value) is datetime:
        # What the service's JSON parsing hands over (``POST /score``'s event times):
        # exact integer timedelta arithmetic (no overflow for any datetime; an aware
        # difference applies the offsets), ~10x cheaper than a pandas Timestamp.
        naive = value.tzinfo is None or value.utcoffset() is None
        return (value - (_EPOCH if naive else _EPOCH_UTC)) // _ONE_US
    stamp = value if isinstance(value, pd.Timestamp) else pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(stamp.as_unit("us").asm8.view(np.int64))


def micros_of(values: list[Any], name: str, *, nullable: bool = False) -> np.ndarray:
    """UTC microseconds (int64; :data:`NAT` where missing) of datetimes or ISO text;
    naive values are UTC.

    Raises:
        SchemaError: A value is missing (unless ``nullable``) or not a date/time.
    """
    # pandas Timestamps (what the service and the fact store hand over) in one pass.
    if all(type(v) is pd.Timestamp for v in values):
        try:  # .value: UTC nanoseconds (naive taken as UTC)
            return np.array([v.value for v in values], dtype=np.int64) // 1000
        except OverflowError:  # outside pandas' nanosecond range: in microseconds
            return np.array([_micros(v) for v in values], dtype=np.int64)
    if not nullable and any(v is None for v in values):
        row = next(i for i, v in enumerate(values) if v is None)
        raise SchemaError(f"Expected a time in every '{name}'. Got a missing one at row {row}.")
    if all(isinstance(v, datetime) or (nullable and v is None) for v in values):
        # The service hands over parsed datetimes: no text parsing.
        return np.array([_micros(v) for v in values], dtype=np.int64)
    try:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise SchemaError(f"Column '{name}' must hold ISO 8601 date/times: {exc}") from exc
    return micros(parsed.astype(TIMESTAMP_DTYPE)).copy()


def from_micros(values: np.ndarray) -> Any:
    """A canonical timestamp column of int64 UTC microseconds (:data:`NAT`: missing)."""
    stamps = values.astype("datetime64[us]")  # int64 min is NaT in datetime64
    return pd.DatetimeIndex(stamps).tz_localize("UTC").astype(TIMESTAMP_DTYPE).array
