"""Errors raised by the ``spark`` package."""

from __future__ import annotations

__all__ = ["SparkError", "SparkJobError"]


class SparkError(Exception):
    """Base class of every error the ``spark`` package raises on purpose."""


class SparkJobError(SparkError):
    """A Spark job failed; the message carries the executor's error, not its traceback."""
