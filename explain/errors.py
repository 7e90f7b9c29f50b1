"""Errors of the explain package: each says what was expected, then what it got."""

from __future__ import annotations

__all__ = ["ExplainError", "UnknownCustomerError"]


class ExplainError(Exception):
    """An explanation cannot be built (missing threshold, model or features)."""


class UnknownCustomerError(ExplainError):
    """The customer is not in the facts, the features or the tag snapshot."""
