"""Errors raised by the ``tags`` package."""

from __future__ import annotations


class TagsError(Exception):
    """Base class of every error the ``tags`` package raises on purpose."""


class TagStoreError(TagsError):
    """The tag store is missing, holds no matching snapshot, or got a malformed table."""


class AccessDenied(TagsError):
    """A role asked for tags, or an action, that the access policy does not grant it."""


class PolicyError(TagsError):
    """The access policy file is missing or invalid."""


class AuditError(TagsError):
    """The audit log cannot be written or read, or its hash chain is broken."""


class BackupError(TagsError):
    """A backup cannot be written, or a backup folder fails its manifest checks."""


class AudienceError(TagsError):
    """An audience expression or a saved audience is invalid or unknown."""
