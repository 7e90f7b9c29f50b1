"""Errors raised by the ``training`` package."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error the ``training`` package raises on purpose."""
