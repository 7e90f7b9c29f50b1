"""Fact tags: the data contract, import with validation, point-in-time features."""

from __future__ import annotations

from features.build import build_features
from features.catalog import FeatureInfo, feature_catalog
from features.errors import FactFileError, FeaturesError, SchemaError, SpecError, StoreError
from features.events import PreparedEvents, prepare_events
from features.importer import ImportReport, SourceOptions, import_facts
from features.io import RawTable, ReadOptions, parse_mapping, read_table
from features.memory import lean_allocators
from features.quarantine import QUARANTINE_COLUMNS, FileCounts
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
from features.spec import FeatureSpec, default_spec, load_spec, spec_hash
from features.store import FactStore
from features.validation import (
    CustomersResult,
    EventsResult,
    validate_customers,
    validate_events,
)

__all__ = [
    "AMOUNT_REQUIRED_EVENT_TYPES",
    "BUILTIN_EVENT_TYPES",
    "EVENT_COLUMNS",
    "EVENT_DTYPES",
    "QUARANTINE_COLUMNS",
    "AttributeSpec",
    "CustomersResult",
    "EventsResult",
    "FactFileError",
    "FactStore",
    "FactsConfig",
    "FeatureInfo",
    "FeatureSpec",
    "FeaturesError",
    "FileCounts",
    "ImportReport",
    "PreparedEvents",
    "RawTable",
    "ReadOptions",
    "ReasonCode",
    "SchemaError",
    "SourceOptions",
    "SpecError",
    "StoreError",
    "build_features",
    "check_customers",
    "check_events",
    "customers_frame",
    "default_spec",
    "events_frame",
    "feature_catalog",
    "import_facts",
    "lean_allocators",
    "load_spec",
    "parse_mapping",
    "prepare_events",
    "read_table",
    "spec_hash",
    "validate_customers",
    "validate_events",
]
