"""Errors raised by the ``serving`` package."""

from __future__ import annotations


class ServingError(Exception):
    """Base class of every error the ``serving`` package raises on purpose."""
