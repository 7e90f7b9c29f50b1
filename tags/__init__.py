"""Rule and model tags: catalogue, rule engine, tag store, segments, access policy, audit."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tags.access import TagReader
    from tags.audit import AuditLog, AuditReport, default_actor
    from tags.backtest import BacktestResult, Outcome, parse_outcome
    from tags.backup import BackupManifest, create_backup, restore_backup, verify_backup
    from tags.catalogue import Catalogue, CompiledTag, copy_library
    from tags.config import TagsConfig
    from tags.definitions import TagDefinition
    from tags.engine import evaluate_tags
    from tags.errors import (
        AccessDenied,
        AudienceError,
        AuditError,
        BacktestError,
        BackupError,
        CatalogueError,
        PolicyError,
        RuleError,
        TagsError,
        TagStoreError,
        UnknownTagError,
    )
    from tags.policy import AccessConfig, AccessPolicy, RolePolicy
    from tags.rules import Rule, compile_rule
    from tags.store import StoreConfig, TagStore
    from tags.store_format import TAG_COLUMNS, RunInfo
    from tags.versions import CatalogueHistory, CataloguePlan

__all__ = [
    "TAG_COLUMNS",
    "AccessConfig",
    "AccessDenied",
    "AccessPolicy",
    "AudienceError",
    "AuditError",
    "AuditLog",
    "AuditReport",
    "BacktestError",
    "BacktestResult",
    "BackupError",
    "BackupManifest",
    "Catalogue",
    "CatalogueError",
    "CatalogueHistory",
    "CataloguePlan",
    "CompiledTag",
    "Outcome",
    "PolicyError",
    "RolePolicy",
    "Rule",
    "RuleError",
    "RunInfo",
    "StoreConfig",
    "TagDefinition",
    "TagReader",
    "TagStore",
    "TagStoreError",
    "TagsConfig",
    "TagsError",
    "UnknownTagError",
    "compile_rule",
    "copy_library",
    "create_backup",
    "default_actor",
    "evaluate_tags",
    "parse_outcome",
    "restore_backup",
    "verify_backup",
]

# Names are imported from their modules on first use: `import tags.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "TagReader": "tags.access",
    "AuditLog": "tags.audit",
    "AuditReport": "tags.audit",
    "default_actor": "tags.audit",
    "BacktestResult": "tags.backtest",
    "Outcome": "tags.backtest",
    "parse_outcome": "tags.backtest",
    "BackupManifest": "tags.backup",
    "create_backup": "tags.backup",
    "restore_backup": "tags.backup",
    "verify_backup": "tags.backup",
    "Catalogue": "tags.catalogue",
    "CompiledTag": "tags.catalogue",
    "copy_library": "tags.catalogue",
    "TagsConfig": "tags.config",
    "TagDefinition": "tags.definitions",
    "evaluate_tags": "tags.engine",
    "AccessDenied": "tags.errors",
    "AudienceError": "tags.errors",
    "AuditError": "tags.errors",
    "BacktestError": "tags.errors",
    "BackupError": "tags.errors",
    "CatalogueError": "tags.errors",
    "PolicyError": "tags.errors",
    "RuleError": "tags.errors",
    "TagsError": "tags.errors",
    "TagStoreError": "tags.errors",
    "UnknownTagError": "tags.errors",
    "AccessConfig": "tags.policy",
    "AccessPolicy": "tags.policy",
    "RolePolicy": "tags.policy",
    "Rule": "tags.rules",
    "compile_rule": "tags.rules",
    "StoreConfig": "tags.store",
    "TagStore": "tags.store",
    "TAG_COLUMNS": "tags.store_format",
    "RunInfo": "tags.store_format",
    "CatalogueHistory": "tags.versions",
    "CataloguePlan": "tags.versions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
