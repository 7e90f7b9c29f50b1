"""Errors raised by the ``tags`` package."""

from __future__ import annotations


class TagsError(Exception):
    """Base class of every error the ``tags`` package raises on purpose."""
