"""Fact tags: the data contract, import with validation, point-in-time features."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported from their modules on first use: `import features.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "build_features": "features.build",
    "FeatureInfo": "features.catalog",
    "feature_catalog": "features.catalog",
    "FactFileError": "features.errors",
    "FeaturesError": "features.errors",
    "SchemaError": "features.errors",
    "SpecError": "features.errors",
    "StoreError": "features.errors",
    "PreparedEvents": "features.events",
    "prepare_events": "features.events",
    "ImportReport": "features.importer",
    "SourceOptions": "features.importer",
    "import_facts": "features.importer",
    "RawTable": "features.io",
    "ReadOptions": "features.io",
    "parse_mapping": "features.io",
    "read_table": "features.io",
    "lean_allocators": "features.memory",
    "QUARANTINE_COLUMNS": "features.quarantine",
    "FileCounts": "features.quarantine",
    "AMOUNT_REQUIRED_EVENT_TYPES": "features.schema",
    "BUILTIN_EVENT_TYPES": "features.schema",
    "EVENT_COLUMNS": "features.schema",
    "EVENT_DTYPES": "features.schema",
    "AttributeSpec": "features.schema",
    "FactsConfig": "features.schema",
    "ReasonCode": "features.schema",
    "check_customers": "features.schema",
    "check_events": "features.schema",
    "customers_frame": "features.schema",
    "events_frame": "features.schema",
    "FeatureSpec": "features.spec",
    "default_spec": "features.spec",
    "load_spec": "features.spec",
    "spec_hash": "features.spec",
    "FactStore": "features.store",
    "CustomersResult": "features.validation",
    "EventsResult": "features.validation",
    "validate_customers": "features.validation",
    "validate_events": "features.validation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
