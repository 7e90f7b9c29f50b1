"""Row validation of imported facts: accept what fits the contract, quarantine the rest.

Pure functions over :class:`features.io.RawTable` text tables: no file access and no
clock (the caller passes ``now``). Every check is a vectorised mask over the whole
batch (:mod:`features.checks`); each rejected row gets exactly one reason, the first
that applies, in the order the checks are listed in :func:`validate_events` /
:func:`validate_customers`, and keeps its file, line and text in the quarantine
(:mod:`features.quarantine`).

Invariant, per file: ``rows_read == accepted + sum(quarantined.values())``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.checks import (
    attribute_field,
    blank_ids,
    duplicate_rows,
    future_times,
    numbers_field,
    repeat_rows,
    timestamps_field,
)
from features.coding import micros
from features.errors import FactFileError
from features.id_index import surely_distinct
from features.io import RawTable
from features.quarantine import (
    FileCounts,
    Rejects,
    assemble,
    finish,
    quoted,
    refuse_all_rejected,
)
from features.schema import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    CUSTOMER_BASE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_DTYPES,
    MAX_AMOUNT,
    TIMESTAMP_DTYPE,
    FactsConfig,
    ReasonCode,
    arrow_table,
    customer_dtypes,
)

__all__ = [
    "CustomersResult",
    "Dedupe",
    "EventsResult",
    "empty_customers",
    "empty_events",
    "shared_pairs",
    "validate_customers",
    "validate_events",
]

# Stored events for duplicate detection: all of them, or a lookup by (customer, time).
StoredEvents: TypeAlias = pd.DataFrame | pa.Table | Callable[[pa.Table], pa.Table | None] | None
# Below this many candidate rows, rows whose (customer, time) pair no other row or stored
# event has are cleared before the exact comparison (above it, repeat_rows hashes rows).
PAIR_FILTER_BELOW_ROWS = 50_000
# How identical event rows are treated (see validate_events).
Dedupe = Literal["auto", "exact"]


@dataclass
class CustomersResult:
    """Validated customers.

    Attributes:
        accepted: New canonical customers (not yet stored).
        quarantine: Rejected rows (:data:`QUARANTINE_COLUMNS`).
        files: Counts per file.
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    files: list[FileCounts]


@dataclass
class EventsResult:
    """Validated events.

    Attributes:
        accepted: New canonical events (not yet stored).
        quarantine: Rejected rows (:data:`QUARANTINE_COLUMNS`).
        files: Counts per file.
        created_customers: Canonical customers created from events of unknown
            customers (signup = their first accepted event), when allowed.
        identical_kept: Accepted rows identical to an earlier row of the import, kept
            as separate events (no order id, ``dedupe="auto"``).
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    files: list[FileCounts]
    created_customers: pd.DataFrame
    identical_kept: int = 0


def empty_events() -> pd.DataFrame:
    """A canonical events table with no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})


def empty_customers(config: FactsConfig) -> pd.DataFrame:
    """A canonical customers table with no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in customer_dtypes(config).items()})


def validate_events(
    raws: Sequence[RawTable],
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    customers: pd.DataFrame,
    stored_events: StoredEvents = None,
    mapping: dict[str, str] | None = None,
    event_type: str | None = None,
    date_format: str | None = None,
    create_unknown: bool | None = None,
    dedupe: Dedupe = "auto",
    erased: Callable[[pd.Series], np.ndarray] | None = None,
) -> EventsResult:
    """Validate events files against the contract, known customers and stored events.

    Checks, in order (a row gets the first that fails): malformed row, blank id (or a
    null marker such as ``null``, ``N/A``, ``-``), unparseable timestamp, unknown event
    type, non-numeric amount, negative amount, amount above
    :data:`~features.schema.MAX_AMOUNT`, missing amount on purchase/refund, bad
    quantity, event in the future beyond
    ``config.future_tolerance_hours``, unknown customer, event before signup, exact
    duplicate (of an earlier row in the batch or of a stored event).

    Identical rows are one event only when they carry an order id (or with
    ``dedupe="exact"``): a purchase log without ids records two purchases of the same
    amount on the same day as two identical rows, and both are real spend. Such rows
    are kept, and only as many copies as the store already holds count as duplicates,
    so importing the same file twice still adds nothing.

    Args:
        raws: The files, read as text.
        config: The facts config (event types, tolerance, unknown-customer policy).
        now: The import time; events later than ``now`` + tolerance are rejected.
        customers: Known customers (at least ``customer_id``, ``signup_at``): stored
            ones plus those accepted in this import.
        stored_events: Events already stored, for duplicate detection, or a function
            returning the stored events that share a ``(customer_id, occurred_at)``
            pair with the Arrow table of keys it is given (the only possible
            duplicates; see ``FactStore.events_matching``).
        mapping: ``target -> source`` column mapping (``--map``).
        event_type: Constant event type for files without an ``event_type`` column
            (also fills blank values).
        date_format: ``strptime`` format of ``occurred_at``.
        create_unknown: Create customers for unknown ids instead of quarantining
            their events; ``None`` follows ``config.unknown_customer``.
        dedupe: ``auto``: identical rows with an order id are duplicates, identical
            rows without one separate events; ``exact``: every identical row is a
            duplicate.
        erased: Marks ids of erased customers (``features.erasure``): their rows are
            quarantined as ``erased`` before any other check.

    Raises:
        FactFileError: A file lacks a required column, or every row is rejected
            for a reason other than being a duplicate.
    """
    mapping = mapping or {}
    if event_type is not None and event_type not in config.all_event_types:
        raise FactFileError(
            f"--event-type must be one of {list(config.all_event_types)} (declare more under "
            f"facts.event_types). Got {event_type!r} instead."
        )
    required = ["customer_id", "occurred_at"] + ([] if event_type else ["event_type"])
    frame, malformed = assemble(
        raws, mapping, kind="events", targets=EVENT_COLUMNS, required=required
    )
    rejects = Rejects(len(frame))
    erased_ids(rejects, frame["customer_id"], erased)
    canon = event_fields(
        frame, rejects, config=config, now=now, event_type=event_type, date_format=date_format
    )
    create = config.unknown_customer == "create" if create_unknown is None else create_unknown
    created = _event_customers(canon, frame["customer_id"], rejects, customers, create=create)
    kept = _event_duplicates(canon, rejects, stored_events, dedupe=dedupe)
    quarantine, files = finish(raws, frame, rejects, malformed, kind="events")
    refuse_all_rejected(files, quarantine)
    accepted = canon[rejects.ok].reset_index(drop=True)
    if len(created):
        # Only customers with at least one accepted event are created.
        has_event = pc.is_in(
            id_array(created["customer_id"]), value_set=id_array(accepted["customer_id"])
        )
        created = created[has_event.to_numpy(zero_copy_only=False)]
    identical_kept = int(kept[rejects.ok].sum())
    created_customers = pd.DataFrame(
        {
            "customer_id": created["customer_id"].astype("string").to_numpy(),
            "signup_at": created["signup_at"].astype(TIMESTAMP_DTYPE).to_numpy(),
        }
    )
    return EventsResult(accepted, quarantine, files, created_customers, identical_kept)


def event_fields(
    frame: pd.DataFrame,
    rejects: Rejects,
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    event_type: str | None,
    date_format: str | None,
) -> pd.DataFrame:
    """Check and convert every field of the events (blank id up to future event); the
    canonical events, one per row of ``frame``, whether rejected or not."""
    ids = frame["customer_id"]
    blank_ids(rejects, ids)
    occurred = timestamps_field(
        rejects, frame["occurred_at"], field_name="occurred_at", date_format=date_format
    )
    types = frame["event_type"].str.lower()
    if event_type is not None:
        types = types.fillna(event_type)
    known_types = list(config.all_event_types)
    rejects.mark(
        (~types.isin(known_types)).to_numpy(),
        ReasonCode.UNKNOWN_EVENT_TYPE,
        lambda hit: (
            f"field 'event_type': expected one of {', '.join(known_types)}, got "
            + quoted(frame["event_type"], hit).where(frame["event_type"][hit].notna(), "blank")
        ),
    )
    amount = numbers_field(
        rejects,
        frame["amount"],
        field_name="amount",
        bad_reason=ReasonCode.BAD_AMOUNT,
        negative_reason=ReasonCode.NEGATIVE_AMOUNT,
        max_value=MAX_AMOUNT,
        too_large_reason=ReasonCode.AMOUNT_OUT_OF_RANGE,
    )
    needs_amount = types.isin(list(AMOUNT_REQUIRED_EVENT_TYPES)).to_numpy()
    rejects.mark(
        needs_amount & amount.isna().to_numpy(),
        ReasonCode.MISSING_AMOUNT,
        lambda hit: "field 'amount': expected an amount on a " + types[hit] + " event, got none",
    )
    quantity = numbers_field(
        rejects,
        frame["quantity"],
        field_name="quantity",
        bad_reason=ReasonCode.BAD_QUANTITY,
        negative_reason=ReasonCode.BAD_QUANTITY,
    )
    future_times(rejects, occurred, field_name="occurred_at", now=now, config=config)

    canon = pd.DataFrame(
        {
            "customer_id": ids.astype(EVENT_DTYPES["customer_id"]),
            "occurred_at": occurred,
            "event_type": types.astype(EVENT_DTYPES["event_type"]),
            "amount": amount,
            "category": frame["category"].astype(EVENT_DTYPES["category"]),
            "product_id": frame["product_id"].astype(EVENT_DTYPES["product_id"]),
            "order_id": frame["order_id"].astype(EVENT_DTYPES["order_id"]),
            "quantity": quantity,
        },
        copy=False,  # new columns (copy-on-write): copying them was most of this frame
    )
    return canon


def _event_customers(
    canon: pd.DataFrame,
    ids: pd.Series,
    rejects: Rejects,
    customers: pd.DataFrame,
    *,
    create: bool,
) -> pd.DataFrame:
    """Mark events of unknown customers (or create those customers from their first
    event, with ``create``) and events before their customer's signup; the customers
    created (``customer_id``, ``signup_at``)."""
    # Arrow hash lookups: pandas' isin/map over millions of ids cost seconds per import.
    event_ids = id_array(canon["customer_id"])
    known_ids = id_array(customers["customer_id"])
    known_signup = naive_utc(customers["signup_at"])
    known = pc.is_valid(pc.index_in(event_ids, value_set=known_ids)).to_numpy(zero_copy_only=False)
    unknown = rejects.ok & ~known
    created = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="str"),
            "signup_at": pd.Series([], dtype=TIMESTAMP_DTYPE),
        }
    )
    if create and unknown.any():
        created = (
            canon.loc[unknown, ["customer_id", "occurred_at"]]
            .groupby("customer_id", sort=True, observed=True)["occurred_at"]
            .min()
            .rename("signup_at")
            .reset_index()
        )
        known_ids = pa.concat_arrays([known_ids, id_array(created["customer_id"])])
        known_signup = np.concatenate([known_signup, naive_utc(created["signup_at"])])
    else:
        rejects.mark(
            unknown,
            ReasonCode.UNKNOWN_CUSTOMER,
            lambda hit: (
                "field 'customer_id': expected a known customer (import its customers "
                "file first, or set facts.unknown_customer: create), got " + quoted(ids, hit)
            ),
        )
    position = pc.index_in(event_ids, value_set=known_ids).to_numpy(zero_copy_only=False)
    matched = ~np.isnan(position)
    signup_values = np.full(len(canon), np.datetime64("NaT"), dtype=known_signup.dtype)
    signup_values[matched] = known_signup[position[matched].astype(np.int64)]
    mark_before_signup(canon, rejects, signup_values)
    return created


def naive_utc(times: pd.Series) -> np.ndarray:
    """UTC times as naive ``datetime64[us]`` (tz-aware to_numpy() makes Python objects)."""
    return times.astype(TIMESTAMP_DTYPE).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def id_array(ids: pd.Series) -> pa.Array:
    """Customer ids as one Arrow string array (missing ids null), for hash lookups."""
    values = pa.array(ids.astype("string").array)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.large_string())


def _event_duplicates(
    canon: pd.DataFrame,
    rejects: Rejects,
    stored_events: StoredEvents,
    *,
    dedupe: Dedupe,
) -> np.ndarray:
    """Mark exact duplicates of an earlier row in the batch or of a stored event.

    Returns:
        Per row, whether it repeats an earlier row and is kept as a separate event.
    """
    candidates = np.flatnonzero(rejects.ok)
    rows = canon.iloc[candidates]
    if callable(stored_events):  # only the stored events sharing a customer and a time
        stored_events = stored_events(arrow_table(rows[["customer_id", "occurred_at"]]))
    if len(rows) < PAIR_FILTER_BELOW_ROWS:
        # Identical rows share their (customer, time) pair: the rows whose pair is
        # nowhere else (almost all of a live batch) repeat nothing. A live batch's rows
        # were compared as Python tuples, a fifth of its validation CPU.
        shared = shared_pairs(rows, stored_events)
        candidates, rows = candidates[shared], rows[shared]
    keep_repeats = rows["order_id"].isna().to_numpy() if dedupe == "auto" else None
    repeats, in_store, kept_rows = repeat_rows(
        rows, EVENT_COLUMNS, stored_events, keep_repeats=keep_repeats
    )
    kept = np.zeros(len(canon), dtype=bool)
    kept[candidates] = kept_rows
    within = np.zeros(len(canon), dtype=bool)
    within[candidates] = repeats
    rejects.mark(
        within,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an earlier row in this import"),
    )
    stored_dup = np.zeros(len(canon), dtype=bool)
    stored_dup[candidates] = in_store
    rejects.mark(
        stored_dup,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an event already stored"),
    )
    return kept


def shared_pairs(rows: pd.DataFrame, stored: pd.DataFrame | pa.Table | None) -> np.ndarray:
    """Per row of ``rows``, whether its ``(customer_id, occurred_at)`` pair is also that
    of another row or of a ``stored`` event: only such rows can be exact duplicates.

    Times are compared as whole microseconds (the stored unit; a finer difference only
    keeps a row that the exact comparison then clears), missing values as equal.
    """
    ids = rows["customer_id"]
    times = micros(rows["occurred_at"])
    if stored is not None and len(stored):
        other = (
            stored.select(["customer_id", "occurred_at"]).to_pandas()
            if isinstance(stored, pa.Table)
            else stored
        )
        # As objects: the two columns' string types may differ (str, string, Arrow).
        ids = pd.concat([ids.astype(object), other["customer_id"].astype(object)])
        times = np.concatenate([times, micros(other["occurred_at"])])
    if len(times) < 2:
        return np.zeros(len(rows), dtype=bool)
    codes = pd.factorize(ids)[0]
    order = np.lexsort((times, codes))
    c_sorted, t_sorted = codes[order], times[order]
    same = (c_sorted[1:] == c_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])
    repeated = np.zeros(len(times), dtype=bool)
    repeated[order[1:][same]] = True
    repeated[order[:-1][same]] = True
    return repeated[: len(rows)]


def validate_customers(
    raws: Sequence[RawTable],
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    stored: pd.DataFrame | None = None,
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    erased: Callable[[pd.Series], np.ndarray] | None = None,
) -> CustomersResult:
    """Validate customers files against the contract and the stored customers.

    Checks, in order: malformed row, blank id, unparseable ``signup_at``, missing
    required attribute / attribute not allowed or out of range (per
    :class:`~features.schema.AttributeSpec`), signup in the future, duplicate id
    (an identical repeat is ``duplicate``; a conflicting one ``duplicate_customer``;
    the first occurrence wins, and stored customers are never overwritten).

    Raises:
        FactFileError: A file lacks a required column, or every row is rejected
            for a reason other than being a duplicate.
    """
    mapping = mapping or {}
    targets = [*CUSTOMER_BASE_COLUMNS, *(a.name for a in config.attributes)]
    required = [*CUSTOMER_BASE_COLUMNS, *(a.name for a in config.attributes if a.required)]
    frame, malformed = assemble(raws, mapping, kind="customers", targets=targets, required=required)
    rejects = Rejects(len(frame))
    ids = frame["customer_id"]
    erased_ids(rejects, ids, erased)
    blank_ids(rejects, ids)
    signup = timestamps_field(
        rejects, frame["signup_at"], field_name="signup_at", date_format=date_format
    )
    canon = pd.DataFrame({"customer_id": ids.astype("string"), "signup_at": signup})
    for spec in config.attributes:
        canon[spec.name] = attribute_field(rejects, spec, frame[spec.name], date_format)
    future_times(rejects, signup, field_name="signup_at", now=now, config=config)

    dtypes = customer_dtypes(config)
    canon = canon.astype(dtypes)
    candidates = np.flatnonzero(rejects.ok)
    subset = canon.iloc[candidates]
    aligned = (
        stored.reindex(columns=list(dtypes)).astype(dtypes)
        if stored is not None and len(stored)
        else None
    )
    same_id = np.zeros(len(canon), dtype=bool)
    same_row = np.zeros(len(canon), dtype=bool)
    identical = np.zeros(len(canon), dtype=bool)
    # Distinct ids and nothing stored (a first import): no row can repeat another, and
    # the two checks below cost 0.5 s for 1M customers.
    if aligned is not None or not surely_distinct(pa.array(subset["customer_id"].array)):
        repeats, in_store = duplicate_rows(subset, list(dtypes), aligned)
        same_id[candidates] = subset["customer_id"].duplicated(keep="first").to_numpy()
        same_row[candidates] = repeats
        identical[candidates] = in_store
    rejects.mark(
        same_row,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an earlier row in this import"),
    )
    rejects.mark(
        same_id,
        ReasonCode.DUPLICATE_CUSTOMER,
        lambda hit: (
            "field 'customer_id': expected a unique id, got "
            + quoted(ids, hit)
            + " again with different values (the first row wins)"
        ),
    )
    if aligned is not None:
        rejects.mark(
            identical,
            ReasonCode.DUPLICATE,
            lambda hit: np.full(int(hit.sum()), "exact duplicate of a customer already stored"),
        )
        rejects.mark(
            canon["customer_id"].isin(aligned["customer_id"]).to_numpy(),
            ReasonCode.DUPLICATE_CUSTOMER,
            lambda hit: (
                "field 'customer_id': expected an id not yet stored, got "
                + quoted(ids, hit)
                + ", stored with different values (stored customers are not overwritten)"
            ),
        )
    quarantine, files = finish(raws, frame, rejects, malformed, kind="customers")
    refuse_all_rejected(files, quarantine)
    accepted = canon[rejects.ok].reset_index(drop=True)
    return CustomersResult(accepted, quarantine, files)


def erased_ids(
    rejects: Rejects, ids: pd.Series, erased: Callable[[pd.Series], np.ndarray] | None
) -> None:
    """Quarantine rows of erased customers (the id is not repeated in the message)."""
    if erased is None:
        return
    rejects.mark(
        erased(ids),
        ReasonCode.ERASED,
        lambda hit: np.full(
            int(hit.sum()), "this customer was erased on request; their data is not taken in"
        ),
    )


def mark_before_signup(canon: pd.DataFrame, rejects: Rejects, signup_values: np.ndarray) -> None:
    """Reject events before their customer's signup (``signup_values``: naive UTC per row,
    NaT where the customer is unknown), with the time expected and the time got."""
    signup_of = pd.Series(
        pd.DatetimeIndex(signup_values).tz_localize("UTC"), index=canon.index
    ).astype(TIMESTAMP_DTYPE)
    before = (canon["occurred_at"] < signup_of).fillna(False).to_numpy()
    rejects.mark(
        before,
        ReasonCode.BEFORE_SIGNUP,
        lambda hit: (
            "field 'occurred_at': expected a time at or after the customer's signup "
            + signup_of[hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
            + ", got "
            + canon["occurred_at"][hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        ),
    )
