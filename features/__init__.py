"""Fact tags: the data contract, import with validation, point-in-time features, synthetic data."""

from __future__ import annotations

from features.errors import FactFileError, FeaturesError, SchemaError, SpecError, StoreError
from features.schema import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    BUILTIN_EVENT_TYPES,
    EVENT_COLUMNS,
    EVENT_DTYPES,
    AttributeSpec,
    FactsConfig,
    ReasonCode,
    check_customers,
    check_events,
    customers_frame,
    events_frame,
)
from features.synthetic import (
    SyntheticConfig,
    SyntheticData,
    generate,
    oracle_churn_probability,
    oracle_expected_value,
    write_synthetic,
)

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "EVENT_COLUMNS",
    "EVENT_DTYPES",
    "AttributeSpec",
    "FactFileError",
    "FactsConfig",
    "FeaturesError",
    "ReasonCode",
    "SchemaError",
    "SpecError",
    "StoreError",
    "SyntheticConfig",
    "SyntheticData",
    "check_customers",
    "check_events",
    "customers_frame",
    "events_frame",
    "generate",
    "oracle_churn_probability",
    "oracle_expected_value",
    "write_synthetic",
]
