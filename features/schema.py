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
    (string, a built-in or declared type), ``amount`` (float64 >= 0, NaN when absent;
    required for purchase and refund), ``category``, ``product_id``, ``order_id``
    (string, nullable) and ``quantity`` (float64, NaN when absent).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.errors import SchemaError

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "CUSTOMER_BASE_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_DTYPES",
    "TIMESTAMP_DTYPE",
    "AttributeSpec",
    "FactsConfig",
    "ReasonCode",
    "check_customers",
    "check_events",
    "customer_dtypes",
    "default_attributes",
]

TIMESTAMP_DTYPE = "datetime64[us, UTC]"

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
EVENT_DTYPES: dict[str, str] = {
    "customer_id": "string",
    "occurred_at": TIMESTAMP_DTYPE,
    "event_type": "string",
    "amount": "float64",
    "category": "string",
    "product_id": "string",
    "order_id": "string",
    "quantity": "float64",
}

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


class ReasonCode(StrEnum):
    """Why a row was quarantined. Stable strings: they are written to quarantine files."""

    BLANK_ID = "blank_id"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_AMOUNT = "bad_amount"
    NEGATIVE_AMOUNT = "negative_amount"
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
    def dtype(self) -> str:
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


def customer_dtypes(config: FactsConfig) -> dict[str, str]:
    """Column -> dtype of the canonical customers table for ``config``."""
    dtypes = {"customer_id": "string", "signup_at": TIMESTAMP_DTYPE}
    dtypes.update({a.name: a.dtype for a in config.attributes})
    return dtypes


def _check_columns(df: pd.DataFrame, expected: dict[str, str], what: str) -> None:
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
                f"Column '{column}' of the {what} table must have dtype {dtype}. "
                f"Got {got} instead."
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
            negative.
    """
    _check_columns(df, EVENT_DTYPES, "events")
    if (df["amount"] < 0).any():
        raise SchemaError("Column 'amount' of events must be >= 0. Got negative amounts.")
    return df
