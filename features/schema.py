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

import re
import warnings
from enum import StrEnum
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.errors import SchemaError

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "CUSTOMER_BASE_COLUMNS",
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

TIMESTAMP_DTYPE: Any = "datetime64[us, UTC]"

BUILTIN_EVENT_TYPES: tuple[str, ...] = ("purchase", "refund", "browse", "login", "complaint")
AMOUNT_REQUIRED_EVENT_TYPES: frozenset[str] = frozenset({"purchase", "refund"})

CUSTOMER_BASE_COLUMNS: tuple[str, ...] = ("customer_id", "signup_at")
EVENT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "occurred_at",
    "event_type",
    "amount",
    "category",
    "product_id",
    "order_id",
    "quantity",
)
# Any, not str: pandas-stubs only accepts literal dtype names in astype().
EVENT_DTYPES: dict[str, Any] = {
    "customer_id": "string",
    "occurred_at": TIMESTAMP_DTYPE,
    "event_type": "string",
    "amount": "float64",
    "category": "string",
    "product_id": "string",
    "order_id": "string",
    "quantity": "float64",
}

# The largest amount one event may carry. Amounts are summed as int64 fixed-point
# (``features.event_arrays.AMOUNT_SCALE`` = 1e4 units per currency unit, exact and
# order-independent); 1e12 per event keeps every per-event value 4 orders of magnitude
# inside int64, and the sums are checked where they are formed. Import quarantines a
# larger amount as ``amount_out_of_range`` rather than letting a sum wrap silently.
MAX_AMOUNT: float = 1e12

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class ReasonCode(StrEnum):
    """Why a row was quarantined. Stable strings: they are written to quarantine files."""

    BLANK_ID = "blank_id"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_AMOUNT = "bad_amount"
    NEGATIVE_AMOUNT = "negative_amount"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    MISSING_AMOUNT = "missing_amount"
    BAD_QUANTITY = "bad_quantity"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    FUTURE_EVENT = "future_event"
    BEFORE_SIGNUP = "before_signup"
    DUPLICATE = "duplicate"
    UNKNOWN_CUSTOMER = "unknown_customer"
    DUPLICATE_CUSTOMER = "duplicate_customer"
    BAD_ATTRIBUTE = "bad_attribute"
    MISSING_ATTRIBUTE = "missing_attribute"
    MALFORMED_ROW = "malformed_row"
    ERASED = "erased"


class AttributeSpec(BaseModel):
    """An attribute fact of customers, declared in ``tagsmith.yaml``.

    Attributes:
        name: Column name (lower snake case).
        type: ``string`` (optionally restricted to ``allowed``), ``int`` or ``float``
            (optionally within ``[min, max]``), or ``date``.
        allowed: For strings, the allowed values (``None``: any non-empty string).
        min: Smallest allowed number (inclusive).
        max: Largest allowed number (inclusive).
        category: Tag category of the fact tag this attribute yields.
        required: Whether a missing value rejects the customer row.
        description: What the attribute means.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["string", "int", "float", "date"] = "string"
    allowed: list[str] | None = None
    min: float | None = None
    max: float | None = None
    category: str = "basic"
    required: bool = False
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _IDENT.match(value) or value in CUSTOMER_BASE_COLUMNS:
            raise ValueError(
                "must be a lower snake_case identifier other than customer_id/signup_at"
                f", got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _bounds_fit_type(self) -> AttributeSpec:
        if self.allowed is not None and self.type != "string":
            raise ValueError(f"'allowed' applies to string attributes only, got type {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"'min'/'max' apply to int/float attributes only, got {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' must be <= 'max', got min={self.min} max={self.max}")
        return self

    @property
    def dtype(self) -> Any:
        """The pandas dtype of this attribute's column."""
        return {
            "string": "string",
            "int": "Int64",
            "float": "float64",
            "date": TIMESTAMP_DTYPE,
        }[self.type]


def default_attributes() -> list[AttributeSpec]:
    """The attribute facts a new project declares (editable in ``tagsmith.yaml``)."""
    return [
        AttributeSpec(
            name="gender",
            allowed=["female", "male", "other", "unknown"],
            description="Self-declared gender.",
        ),
        AttributeSpec(
            name="birth_year", type="int", min=1900, max=2030, description="Year of birth."
        ),
        AttributeSpec(
            name="region",
            allowed=["north", "south", "east", "west", "central"],
            category="basic",
            description="Sales region of the customer's address.",
        ),
        AttributeSpec(name="city", description="City of the customer's address."),
        AttributeSpec(
            name="channel",
            allowed=["web", "app", "store", "partner"],
            description="Acquisition channel.",
        ),
        AttributeSpec(name="occupation", description="Occupation, free text."),
    ]


class FactsConfig(BaseModel):
    """The ``facts`` section of ``tagsmith.yaml``: the contract's configurable part.

    Attributes:
        attributes: Attribute facts of customers.
        event_types: Event types beyond the built-in ones.
        future_tolerance_hours: Events later than import time plus this are rejected.
        unknown_customer: What to do with an event whose customer is not known:
            ``quarantine`` it (default) or ``create`` the customer (signup = first event).
    """

    model_config = ConfigDict(extra="forbid")

    attributes: list[AttributeSpec] = Field(default_factory=default_attributes)
    event_types: list[str] = Field(default_factory=list)
    future_tolerance_hours: int = Field(default=24, ge=0, le=24 * 365)
    unknown_customer: Literal["quarantine", "create"] = "quarantine"

    @field_validator("event_types")
    @classmethod
    def _event_types_are_new_identifiers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _IDENT.match(name):
                raise ValueError(f"event types must be lower snake_case, got {name!r}")
            if name in BUILTIN_EVENT_TYPES:
                raise ValueError(f"{name!r} is built in; declare only additional event types")
        if len(set(value)) != len(value):
            raise ValueError(f"event types must be unique, got {value}")
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_names_unique(cls, value: list[AttributeSpec]) -> list[AttributeSpec]:
        names = [a.name for a in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"attribute names must be unique, got duplicates {dupes}")
        return value

    @property
    def all_event_types(self) -> tuple[str, ...]:
        """Built-in event types followed by the declared ones."""
        return BUILTIN_EVENT_TYPES + tuple(self.event_types)

    def attribute(self, name: str) -> AttributeSpec:
        """Return the declared attribute called ``name``.

        Raises:
            SchemaError: No attribute has that name.
        """
        for spec in self.attributes:
            if spec.name == name:
                return spec
        raise SchemaError(
            f"Expected one of the declared attributes {[a.name for a in self.attributes]}. "
            f"Got {name!r} instead."
        )


def customer_dtypes(config: FactsConfig) -> dict[str, Any]:
    """Column -> dtype of the canonical customers table for ``config``."""
    dtypes: dict[str, Any] = {"customer_id": "string", "signup_at": TIMESTAMP_DTYPE}
    dtypes.update({a.name: a.dtype for a in config.attributes})
    return dtypes


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
    if ids.duplicated().any():
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


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table (no index); missing values become nulls."""
    with warnings.catch_warnings():
        # pyarrow reads tz-aware columns through Series.values, which pandas 3.1 flags.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return pa.Table.from_pandas(frame, preserve_index=False)
