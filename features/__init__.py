"""Fact tags: the data contract, import with validation, point-in-time features, synthetic data."""

from __future__ import annotations

from features.build import PreparedEvents, build_features, prepare_events
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
from features.spec import (
    FeatureInfo,
    FeatureSpec,
    default_spec,
    feature_catalog,
    load_spec,
    spec_hash,
)

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "EVENT_COLUMNS",
    "EVENT_DTYPES",
    "AttributeSpec",
    "FactFileError",
    "FactsConfig",
    "FeatureInfo",
    "FeatureSpec",
    "FeaturesError",
    "PreparedEvents",
    "ReasonCode",
    "SchemaError",
    "SpecError",
    "StoreError",
    "build_features",
    "check_customers",
    "check_events",
    "customers_frame",
    "default_spec",
    "events_frame",
    "feature_catalog",
    "load_spec",
    "prepare_events",
    "spec_hash",
]
