"""Errors raised by the ``serving`` package.

:class:`ServingError` is what the CLI shows as a one-line message. The HTTP errors also
subclass BentoML's exceptions, so BentoML maps them to their status code wherever they
are raised; the service renders them itself as ``{"error": message, "status": code}``
so that 401/403 keep their explanation (BentoML would blank it).
"""

from __future__ import annotations

from http import HTTPStatus

from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound

__all__ = [
    "BadRequest",
    "Forbidden",
    "HttpError",
    "ModelLoadError",
    "PayloadTooLarge",
    "ServingError",
    "ServingNotFound",
    "TooManyRequests",
    "Unauthorized",
]


class ServingError(Exception):
    """Base class of every error the ``serving`` package raises on purpose."""


class ModelLoadError(ServingError):
    """A registered model could not be loaded, or failed its smoke test."""


class HttpError(ServingError, BentoMLException):
    """An error answered to an HTTP caller with a 4xx status and a clear message."""

    error_code = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        BentoMLException.__init__(self, message)

    @property
    def status(self) -> int:
        """The HTTP status code of this error."""
        return int(self.error_code)


class BadRequest(HttpError, InvalidArgument):
    """The request is well-formed JSON but asks for something invalid (400)."""

    error_code = HTTPStatus.BAD_REQUEST


class Unauthorized(HttpError):
    """No API key, or one that matches no stored key (401)."""

    error_code = HTTPStatus.UNAUTHORIZED


class Forbidden(HttpError):
    """The caller's role may not see or do what it asked for (403)."""

    error_code = HTTPStatus.FORBIDDEN


class ServingNotFound(HttpError, NotFound):
    """A named resource (a customer, a model) does not exist (404)."""

    error_code = HTTPStatus.NOT_FOUND


class PayloadTooLarge(HttpError):
    """The request body is larger than the configured limit (413)."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class TooManyRequests(HttpError):
    """Ingestion outruns real-time tagging; retry after ``retry_after_s`` (429)."""

    error_code = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
