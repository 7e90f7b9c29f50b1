"""Errors of real-time tagging: what callers (the service, the stream consumer) map."""

from __future__ import annotations

__all__ = ["BadEvents", "Busy", "StreamingError"]


class StreamingError(Exception):
    """Base class of real-time tagging errors (the message says expected, then got)."""


class BadEvents(StreamingError):
    """The batch itself is unusable (not a list of JSON objects, too many events)."""


class Busy(StreamingError):
    """Ingestion outruns tagging: the caller should retry after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
