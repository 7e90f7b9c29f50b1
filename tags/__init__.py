"""Rule and model tags: catalogue, rule engine, tag store, segments, access policy, audit."""

from __future__ import annotations

from tags.access import TagReader
from tags.audit import AuditLog, AuditReport, default_actor
from tags.backup import BackupManifest, create_backup, restore_backup, verify_backup
from tags.errors import (
    AccessDenied,
    AudienceError,
    AuditError,
    BackupError,
    PolicyError,
    TagsError,
    TagStoreError,
)
from tags.policy import AccessConfig, AccessPolicy, RolePolicy
from tags.store import RunInfo, StoreConfig, TagStore

__all__ = [
    "AccessConfig",
    "AccessDenied",
    "AccessPolicy",
    "AudienceError",
    "AuditError",
    "AuditLog",
    "AuditReport",
    "BackupError",
    "BackupManifest",
    "PolicyError",
    "RolePolicy",
    "RunInfo",
    "StoreConfig",
    "TagReader",
    "TagStore",
    "TagStoreError",
    "TagsError",
    "create_backup",
    "default_actor",
    "restore_backup",
    "verify_backup",
]
