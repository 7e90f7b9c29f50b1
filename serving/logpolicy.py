"""The service's one request-logging policy: no request bodies or ids, a request id instead.

BentoML logs every refused request (a validation 400 included) at ERROR with the
traceback, and pydantic's error text quotes the input: customer ids ended up in the
service log (hostile finding 14-5). The policy, at every log level:

* Each request gets a request id (a sane ``X-Request-ID`` from the caller, else a new
  one), echoed in the ``X-Request-ID`` response header; log lines name it, so a log line
  and a client's complaint meet without any customer data in the log.
* A refused request (4xx: validation, bad JSON) is one INFO line: request id, method,
  path, and for validation errors the failing field paths and error types, never the
  input or the exception text.
* An unexpected exception (5xx) stays an ERROR with its stack (files, lines,
  functions, exception types) but without exception messages, which may quote data.
"""

from __future__ import annotations

import contextvars
import logging
import re
import traceback
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BENTOML_REQUEST_LOGGER",
    "RequestIdMiddleware",
    "RequestLogFilter",
    "current_request_id",
    "install_log_policy",
]

# The logger BentoML's HTTP app reports request exceptions on ("Exception on /x [POST]").
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar(
    "tagsmith_request_id", default="-"
)
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def current_request_id() -> str:
    """The id of the request being served in this context ('-' outside requests)."""
    return _REQUEST_ID.get()


class RequestIdMiddleware:
    """Give each HTTP request an id (kept from a sane ``X-Request-ID``) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        token = _REQUEST_ID.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)


def _is_client_error(exc: BaseException) -> bool:
    """Whether BentoML answers ``exc`` with a 4xx (it is the caller's, not ours)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", None)
    return isinstance(code, int) and 400 <= code < 500


def _validation_summary(exc: BaseException) -> str:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return type(exc).__name__
    parts = []
    for error in exc.errors(include_input=False, include_context=False, include_url=False)[:10]:
        loc = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{loc or '(body)'}: {error.get('type')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


def _stack_without_messages(exc: BaseException) -> str:
    """The traceback of ``exc`` (and its causes) with exception types, no messages."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.format_list(traceback.extract_tb(current.__traceback__))
        lines.insert(0, f"{type(current).__module__}.{type(current).__qualname__}\n")
        lines[1:1] = frames
        lines.insert(0, "Traceback (most recent call last):\n")
        current = current.__cause__ or current.__context__
        if current is not None:
            lines.insert(0, "\nwhich was raised while handling:\n")
    return "".join(lines).rstrip()


class RequestLogFilter(logging.Filter):
    """Rewrite BentoML's request-exception records to the policy (see the module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        where = record.getMessage().removeprefix("Exception on ").strip()
        rid = current_request_id()
        if _is_client_error(exc):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "request %s: %s refused with 4xx (%s)"
            record.args = (rid, where, _validation_summary(exc))
        else:
            record.msg = "request %s: %s failed with an unexpected error (500)\n%s"
            record.args = (rid, where, _stack_without_messages(exc))
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_FILTER = RequestLogFilter()


def install_log_policy(logger_names: tuple[str, ...] = (BENTOML_REQUEST_LOGGER,)) -> None:
    """Attach the policy's filter to the loggers that report request exceptions (once)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
