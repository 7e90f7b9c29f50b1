"""Errors raised by the ``training`` package."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error the ``training`` package raises on purpose."""


class RegistryError(TrainingError):
    """The model registry (or the alias history) cannot do what was asked."""


class ModelLoadError(RegistryError):
    """A registered model version cannot be loaded or fails its smoke prediction."""


class PromotionError(TrainingError):
    """A promotion or rollback was refused (gates, missing reason, nothing to restore)."""


class PromotionConflict(PromotionError):
    """Another promotion changed (or is changing) the alias: this one did nothing."""
