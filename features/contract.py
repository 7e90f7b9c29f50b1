"""The fact contract's pandas-free half: column names, dtypes, reason codes, the config.

What ``tagsmith.yaml`` declares about facts (``facts``: attribute facts and event types;
``governance.consent``: consent purposes) and the names and dtypes every stage agrees
on. It imports no pandas, so loading a project's config (every CLI command, even its
``--help``) stays cheap; the checks and frame builders that need pandas are in
:mod:`features.schema`, which re-exports all of this.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

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
    "ConsentConfig",
    "FactsConfig",
    "ReasonCode",
    "customer_dtypes",
    "default_attributes",
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


class ConsentConfig(BaseModel):
    """``governance.consent``: declared purposes and the default of each.

    Attributes:
        purposes: Purpose -> what holds without a record (``granted`` or ``refused``).
            Empty: consent is not checked (nothing declares purposes yet).
    """

    model_config = ConfigDict(extra="forbid")

    purposes: dict[str, Literal["granted", "refused"]] = Field(default_factory=dict)

    @field_validator("purposes")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if (
                not name.replace("_", "").isalnum()
                or not name[:1].isalpha()
                or name != name.lower()
            ):
                raise ValueError(f"purposes are lower snake_case words; got {name!r}")
        return value
