"""Errors raised by the ``scoring`` package.

A feature frame that breaks a model's contract raises ``features.errors.SchemaError``
(the contract is checked at the same boundary as the facts); everything else that goes
wrong while loading or running models raises a :class:`ScoringError`.
"""

from __future__ import annotations

__all__ = ["ModelLoadError", "ScoringError"]


class ScoringError(Exception):
    """Base class of every error the ``scoring`` package raises on purpose."""


class ModelLoadError(ScoringError):
    """A registered model could not be loaded, or failed its smoke test."""
