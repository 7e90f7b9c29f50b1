"""The fact-tag contract: what customers and events look like once imported.

This module is the single source of truth for column names, dtypes and the reason
codes of rejected rows. Every later stage reads facts through
:func:`check_customers` / :func:`check_events`, which raise :class:`SchemaError`
naming the column and what was expected.

Canonical in-memory form (pandas):

customers
    ``customer_id`` (string, non-empty, unique), ``signup_at`` (datetime64[us, UTC]),
    then one column per declared attribute fact (see :class:`AttributeSpec`).
events
    ``customer_id`` (string), ``occurred_at`` (datetime64[us, UTC]), ``event_type``
    (string, a built-in or declared type), ``amount`` (float64 in ``[0, MAX_AMOUNT]``,
    NaN when absent; required for purchase and refund), ``category``, ``product_id``,
    ``order_id`` (string, nullable) and ``quantity`` (float64, NaN when absent).
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd
import pyarrow as pa

from features.contract import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    BUILTIN_EVENT_TYPES,
    CUSTOMER_BASE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_DTYPES,
    MAX_AMOUNT,
    TIMESTAMP_DTYPE,
    AttributeSpec,
    FactsConfig,
    ReasonCode,
    customer_dtypes,
    default_attributes,
)
from features.errors import SchemaError
from features.id_index import surely_distinct

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "CUSTOMER_BASE_COLUMNS",
    "EVENT_ARROW_SCHEMA",
    "EVENT_COLUMNS",
    "EVENT_DTYPES",
    "MAX_AMOUNT",
    "TIMESTAMP_DTYPE",
    "AttributeSpec",
    "FactsConfig",
    "ReasonCode",
    "arrow_table",
    "check_amounts",
    "check_customers",
    "check_events",
    "customer_dtypes",
    "customers_frame",
    "default_attributes",
    "events_frame",
]


def _check_columns(df: pd.DataFrame, expected: dict[str, Any], what: str) -> None:
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise SchemaError(
            f"The {what} table must have columns {list(expected)}. "
            f"Missing {missing}; got {list(df.columns)} instead."
        )
    for column, dtype in expected.items():
        got = str(df[column].dtype)
        if got != dtype and not (dtype == "string" and got in ("str", "string")):
            raise SchemaError(
                f"Column '{column}' of the {what} table must have dtype {dtype}. Got {got} instead."
            )


def check_customers(df: pd.DataFrame, config: FactsConfig | None = None) -> pd.DataFrame:
    """Check that ``df`` is a canonical customers table; return it unchanged.

    Args:
        df: The table to check.
        config: The facts config whose attributes must be present; ``None`` checks only
            ``customer_id`` and ``signup_at``.

    Raises:
        SchemaError: A column is missing or has the wrong dtype, or ids are blank or
            not unique.
    """
    expected = (
        customer_dtypes(config)
        if config
        else {"customer_id": "string", "signup_at": TIMESTAMP_DTYPE}
    )
    _check_columns(df, expected, "customers")
    ids = df["customer_id"]
    if ids.isna().any() or (ids.str.len() == 0).any():
        raise SchemaError("Column 'customer_id' of customers must be non-empty. Got blank ids.")
    if not surely_distinct(pa.array(ids.array)) and ids.duplicated().any():
        first = ids[ids.duplicated()].iloc[0]
        raise SchemaError(
            f"Column 'customer_id' of customers must be unique. Got {first!r} more than once."
        )
    return df


def check_events(df: pd.DataFrame) -> pd.DataFrame:
    """Check that ``df`` is a canonical events table; return it unchanged.

    Raises:
        SchemaError: A column is missing or has the wrong dtype, or an amount is
            negative or above :data:`MAX_AMOUNT`.
    """
    _check_columns(df, EVENT_DTYPES, "events")
    check_amounts(df["amount"])
    return df


def check_amounts(amount: pd.Series) -> None:
    """Check that every present amount is in ``[0, MAX_AMOUNT]``.

    Raises:
        SchemaError: An amount is negative or above :data:`MAX_AMOUNT`.
    """
    if (amount < 0).any():
        raise SchemaError("Column 'amount' of events must be >= 0. Got negative amounts.")
    too_large = amount > MAX_AMOUNT
    if too_large.any():
        raise SchemaError(
            f"Column 'amount' of events must be <= {MAX_AMOUNT:.0e}. "
            f"Got {float(amount[too_large].iloc[0])!r}."
        )


def events_frame(records: list[dict[str, object]] | pd.DataFrame) -> pd.DataFrame:
    """Build a canonical events table from trusted records (tests, online requests).

    Missing optional columns are added empty; timestamps are parsed and converted to
    UTC (naive ones are taken as UTC). This is not the import path: untrusted files go
    through validation, which quarantines bad rows instead of raising.

    Raises:
        SchemaError: A required column is missing or a value cannot be converted.
    """
    df = pd.DataFrame(records).copy() if not isinstance(records, pd.DataFrame) else records.copy()
    for column in ("customer_id", "occurred_at", "event_type"):
        if column not in df.columns:
            raise SchemaError(
                f"Events must have a '{column}' column. Got columns {list(df.columns)}."
            )
    out = pd.DataFrame(index=range(len(df)))
    for column in EVENT_COLUMNS:
        values = df[column].reset_index(drop=True) if column in df.columns else None
        try:
            if column == "occurred_at":
                out[column] = _to_utc(values)
            elif EVENT_DTYPES[column] == "float64":
                out[column] = (
                    pd.Series(float("nan"), index=out.index)
                    if values is None
                    else pd.to_numeric(values, errors="raise").astype("float64")
                )
            else:
                out[column] = (
                    pd.Series(pd.NA, index=out.index, dtype="string")
                    if values is None
                    else values.astype("string")
                )
        except (ValueError, TypeError, OverflowError) as exc:
            raise SchemaError(
                f"Column '{column}' of events must convert to {EVENT_DTYPES[column]}: {exc}"
            ) from exc
    return check_events(out)


def customers_frame(
    records: list[dict[str, object]] | pd.DataFrame, config: FactsConfig | None = None
) -> pd.DataFrame:
    """Build a canonical customers table from trusted records (tests, online requests).

    Declared attributes missing from ``records`` are added empty.

    Raises:
        SchemaError: A required column is missing or a value cannot be converted.
    """
    config = config or FactsConfig()
    df = pd.DataFrame(records).copy() if not isinstance(records, pd.DataFrame) else records.copy()
    for column in CUSTOMER_BASE_COLUMNS:
        if column not in df.columns:
            raise SchemaError(
                f"Customers must have a '{column}' column. Got columns {list(df.columns)}."
            )
    out = pd.DataFrame(index=range(len(df)))
    out["customer_id"] = df["customer_id"].reset_index(drop=True).astype("string")
    try:
        out["signup_at"] = _to_utc(df["signup_at"].reset_index(drop=True))
    except (ValueError, TypeError, OverflowError) as exc:
        raise SchemaError(f"Column 'signup_at' of customers must be timestamps: {exc}") from exc
    for spec in config.attributes:
        values = df[spec.name].reset_index(drop=True) if spec.name in df.columns else None
        try:
            if values is None:
                out[spec.name] = pd.Series(pd.NA, index=out.index).astype(spec.dtype)
            elif spec.type == "date":
                out[spec.name] = _to_utc(values)
            elif spec.type in ("int", "float"):
                out[spec.name] = pd.to_numeric(values, errors="raise").astype(spec.dtype)
            else:
                out[spec.name] = values.astype("string")
        # OverflowError: an integer beyond int64 (birth_year = 10**30 was an HTTP 500).
        except (ValueError, TypeError, OverflowError) as exc:
            raise SchemaError(
                f"Attribute '{spec.name}' of customers must convert to {spec.dtype}: {exc}"
            ) from exc
    return check_customers(out, config)


def _to_utc(values: pd.Series | None) -> pd.Series:
    if values is None:
        raise ValueError("timestamps are required")
    parsed = pd.to_datetime(values, errors="raise", utc=True, format="mixed")
    return parsed.astype(TIMESTAMP_DTYPE)


_THREADED_FROM_ROWS = 100_000


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table (no index); missing values become nulls."""
    with warnings.catch_warnings():
        # pyarrow reads tz-aware columns through Series.values, which pandas 3.1 flags.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        # pyarrow converts columns on a new thread pool from 100 rows a column on: for
        # a live batch's few hundred rows, starting the pool costs more than it saves.
        threads = None if len(frame) >= _THREADED_FROM_ROWS else 1
        return pa.Table.from_pandas(frame, preserve_index=False, nthreads=threads)


def _event_arrow_schema() -> pa.Schema:
    frame = pd.DataFrame({c: pd.Series(dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})
    return arrow_table(frame).schema.remove_metadata()


# The Arrow types of canonical events: what an import's validated rows have when hashed.
EVENT_ARROW_SCHEMA = _event_arrow_schema()
