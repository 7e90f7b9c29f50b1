"""Rule and model tags: catalogue, rule engine, tag store, segments, access policy, audit."""

from __future__ import annotations

from tags.access import TagReader
from tags.audit import AuditLog, AuditReport, default_actor
from tags.backtest import BacktestResult, Outcome, backtest, parse_outcome
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
    "backtest",
    "compile_rule",
    "copy_library",
    "create_backup",
    "default_actor",
    "evaluate_tags",
    "parse_outcome",
    "restore_backup",
    "verify_backup",
]
