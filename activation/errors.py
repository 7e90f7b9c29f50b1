"""Errors raised by the ``activation`` package.

Every message says what was expected, then what was got, and names the file, trigger,
destination or delivery it is about.
"""

from __future__ import annotations

__all__ = [
    "ActivationError",
    "DefinitionError",
    "DeliveryError",
    "DispatcherBusy",
    "OutboxError",
    "PlanRefused",
]


class ActivationError(Exception):
    """Base class of every error the ``activation`` package raises on purpose."""


class DefinitionError(ActivationError):
    """A trigger, audience sync or destination file breaks the schema or the rules."""


class PlanRefused(ActivationError):
    """``apply`` was refused: the plan has problems (listed in the message)."""


class OutboxError(ActivationError):
    """The outbox database cannot be opened, or a delivery asked for does not exist."""


class DeliveryError(ActivationError):
    """A destination cannot be reached with its settings (e.g. its secret is not set)."""


class DispatcherBusy(ActivationError):
    """Another dispatcher holds the project's dispatcher lock."""
