"""The BentoML tag service, made by :func:`make_service` around a runtime factory.

Endpoints:
    POST /tags          rule + predicted tags of 1..1000 customers from memory
    POST /score         one customer's posted facts -> features -> rule + predicted tags
    POST /events        a batch of behaviour events -> stored, touched customers re-tagged
    POST /explain       why 1..1000 customers have each tag (rule traces, model reasons)
    GET  /catalog       the catalogue entries the caller's role may see
    GET  /models        serving model versions, load times, last reload result
    POST /admin/reload  check aliases and the tag store now (admin role)
and BentoML's /livez, /readyz, /metrics and OpenAPI (/docs.json).

The service never imports the ``tagsmith`` wiring package: the wiring module hands
:func:`make_service` a factory of the runtime (stores, registry, catalogue, policy, audit
log, keys) and the settings, and ``bentoml serve`` imports the service it returns
(``tagsmith serve`` runs ``bentoml serve tagsmith.app:TagService``). Each worker process
calls the factory once, in the service's constructor.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, cast

import anyio
import anyio.to_thread
import bentoml
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import to_json
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.access import Caller
from serving.config import MAX_CUSTOMERS_PER_REQUEST
from serving.errors import Forbidden, HttpError, ServingError, TooManyRequests, Unauthorized
from serving.logpolicy import RequestIdMiddleware, install_log_policy
from serving.openapi import OpenApiMiddleware, package_version
from serving.runtime import ServingRuntime
from serving.settings import ServingSettings
from serving.state import settle_heap

__all__ = ["BodyLimitMiddleware", "RuntimeFactory", "make_service"]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_SCORE = 20_000
# OpenTelemetry's exclude list (regular expressions searched in each request's URL)
# when ``serving.tracing`` is off: every URL.
UNTRACED_URLS = (".*",)
MAX_EVENTS_PER_POST = 10_000

RuntimeFactory = Callable[[], ServingRuntime]

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CustomerIds = Annotated[list[Identifier], Field(min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST)]
NameList = Annotated[list[Identifier], Field(max_length=200)]
AttributeValue = Annotated[str, StringConstraints(max_length=500)] | int | float | bool | None


def _checked(runtime: object) -> ServingRuntime:
    """``runtime`` if it is a :class:`ServingRuntime`.

    Raises:
        ServingError: The factory returned something else.
    """
    if not isinstance(runtime, ServingRuntime):
        raise ServingError(
            "Expected the runtime factory to return a ServingRuntime. "
            f"Got {type(runtime).__name__} instead."
        )
    return runtime


class BodyLimitMiddleware:
    """Answer 413 to request bodies over ``max_bytes`` before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        # Buffer the body (bounded) before the app sees it: a chunked body that grows
        # past the limit is refused with 413 instead of failing inside the app.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": f"Expected a request body of at most {self.max_bytes} bytes. "
                "Got a larger one.",
                "status": 413,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one."""
    first: list[Message] = (
        [pending]
        if pending is not None
        else [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    )

    async def replay() -> Message:
        if first:
            return first.pop()
        return await receive()

    return replay


def _utc(value: datetime) -> pd.Timestamp:
    """A UTC timestamp (naive times are taken as UTC, as in the fact contract)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class CustomerFacts(BaseModel):
    """One customer's attribute facts, as in the fact contract."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Identifier
    signup_at: datetime
    attributes: dict[Identifier, AttributeValue] = Field(default_factory=dict, max_length=100)


class EventFacts(BaseModel):
    """One behaviour event of the customer (``customer_id`` is the scored customer's)."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: datetime
    event_type: Identifier
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    category: Identifier | None = None
    product_id: Identifier | None = None
    order_id: Identifier | None = None
    quantity: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class TagRow(BaseModel):
    """One tag of one customer."""

    display_name: str | None = Field(default=None, description="The tag's catalogue name")
    tag_id: str
    value: str
    score: float | None = Field(description="Model score (probability or amount); null for rules")
    source: str = Field(description="fact, rule or model")
    version: str = Field(description="'tag@version' of a rule, 'model-name/version' of a model")
    as_of: str


class CustomerTags(BaseModel):
    """The tags of one requested customer, or why there are none."""

    customer_id: str
    found: bool
    tags: list[TagRow] | None = None
    error: str | None = None


class TagsAnswer(BaseModel):
    """Answer of ``POST /tags``, one result per requested id, in request order."""

    as_of: str | None
    run_id: str | None
    model_versions: dict[str, str]
    results: list[CustomerTags]
    unknown_ids: list[str]


class _TagServiceBase:
    """The tag service's endpoints; :func:`make_service` adds the runtime and settings."""

    runtime: ServingRuntime

    def __init__(self, runtime_factory: RuntimeFactory) -> None:
        # In the worker, after BentoML configured logging: no request data in any log.
        install_log_policy()
        self.runtime = _checked(runtime_factory())
        result = self.runtime.start()
        log.info("Tag service ready: %s", result.to_json())
        settle_heap()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the watcher and write the queued audit entries."""
        self.runtime.stop()
        close = getattr(self.runtime.audit, "close", None)
        if callable(close):
            close()

    # ----------------------------------------------------------------- helpers
    def _caller(self, headers: Any, action: str) -> Caller:
        try:
            return self.runtime.authenticate(headers)
        except Unauthorized as exc:
            self.runtime.audit_denied(None, action, exc.message)
            raise

    def _refused(
        self, ctx: bentoml.Context, caller: Caller | None, action: str, exc: HttpError
    ) -> Any:
        if isinstance(exc, Forbidden):
            self.runtime.audit_denied(caller, action, exc.message)
        # BentoML applies ctx's status to whatever the API returns.
        ctx.response.status_code = exc.status
        return JSONResponse({"error": exc.message, "status": exc.status}, exc.status)

    # ----------------------------------------------------------------- POST APIs
    @bentoml.api(route="/tags")
    async def tags(
        self,
        customer_ids: CustomerIds,
        ctx: bentoml.Context,
        categories: NameList | None = None,
        tags: NameList | None = None,
    ) -> TagsAnswer:
        """Rule and predicted tags of 1 to 1000 customers (unknown ids reported per id).

        Optional ``categories`` and ``tags`` narrow the answer; naming a tag the caller's
        role may not see is refused with 403.
        """
        caller = None
        try:
            caller = self._caller(ctx.request.headers, "serve.tags")
            body = self.runtime.tags_json(caller, customer_ids, categories=categories, tag_ids=tags)
            # The runtime renders the JSON itself (rows are pre-rendered per snapshot);
            # BentoML sends a Response as is, without re-validating and re-encoding it.
            return cast(TagsAnswer, Response(content=body, media_type="application/json"))
        except HttpError as exc:
            return cast(TagsAnswer, self._refused(ctx, caller, "serve.tags", exc))

    @bentoml.api(route="/explain")
    def explain(
        self,
        customer_ids: CustomerIds,
        ctx: bentoml.Context,
        categories: NameList | None = None,
        tags: NameList | None = None,
    ) -> dict[str, Any]:
        """Why each of 1 to 1000 customers has each tag the caller's role may see.

        Rule and fact tags: every clause with the customer's feature values and the
        population thresholds of the snapshot's run. Predicted tags: the serving
        model's top reasons (SHAP contributions adding up to its raw score). Features
        that feed only tags the role may not see are never quoted.
        """
        caller = None
        try:
            caller = self._caller(ctx.request.headers, "serve.explain")
            answer = self.runtime.explain(caller, customer_ids, categories=categories, tag_ids=tags)
            # Encoded once here; BentoML sends a Response as is (no second encoding pass).
            body = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            return cast(dict[str, Any], Response(content=body, media_type="application/json"))
        except HttpError as exc:
            return self._refused(ctx, caller, "serve.explain", exc)

    @bentoml.api(route="/score")
    def score(
        self,
        customer: CustomerFacts,
        ctx: bentoml.Context,
        events: Annotated[list[EventFacts], Field(max_length=MAX_EVENTS_PER_SCORE)] = [],  # noqa: B006 - pydantic copies defaults
        as_of: datetime | None = None,
        categories: NameList | None = None,
        tags: NameList | None = None,
    ) -> dict[str, Any]:
        """Features, rule tags and predicted tags of one customer from posted facts.

        For customers not yet in the tag store: the same feature and rule code as the
        batch run, and the serving champion models. ``as_of`` defaults to now.
        """
        # A sync route, as /explain: the 3-9 ms of scoring run on BentoML's worker thread,
        # not on the event loop, so /tags answers in between. (As an async route /score
        # gained ~1 ms of p50 and no p99 over HTTP, sequentially; under a mix, every /tags
        # call would wait behind a whole /score.)
        caller = None
        try:
            caller = self._caller(ctx.request.headers, "serve.score")
            cid = customer.customer_id
            record = {
                **customer.attributes,
                "customer_id": cid,
                "signup_at": _utc(customer.signup_at),
            }
            # The validated fields as they are (a model's __dict__ holds exactly its
            # fields; extra ones are forbidden): the live scorer reads parsed datetimes
            # (naive: UTC) itself. model_dump and a pandas Timestamp per event cost
            # ~0.5 ms for 100 events, dict(model) ~0.4 ms, this ~0.02 ms.
            event_records = [{**e.__dict__, "customer_id": cid} for e in events]
            # "now" to the whole second: features count whole seconds (finding 14-3).
            stamp = _utc(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC").floor("s")
            answer = self.runtime.score(
                caller,
                record,
                event_records,
                as_of=stamp,
                categories=categories,
                tag_ids=tags,
            )
            # Encoded once, as pydantic's JSON mode would (BentoML's own output path
            # validates the dict into a root model, dumps it to Python and json.dumps it).
            return cast(
                dict[str, Any],
                Response(
                    content=to_json(answer, inf_nan_mode="null"), media_type="application/json"
                ),
            )
        except HttpError as exc:
            return self._refused(ctx, caller, "serve.score", exc)

    @bentoml.api(route="/events")
    async def events(
        self,
        events: Annotated[list[Any], Field(max_length=MAX_EVENTS_PER_POST)],
        ctx: bentoml.Context,
    ) -> dict[str, Any]:
        """Send behaviour events (the fact contract plus an ``event_id``) for real-time tags.

        Each event is validated like a row of ``facts import`` (bad ones are quarantined
        with the same reason codes), stored durably once per ``event_id``, and the
        customers it touches are re-tagged before the answer: ``/tags`` shows their new
        values. Needs a key whose role has ``write_events``. 429 with ``Retry-After``
        when ingestion outruns tagging.
        """
        # An async route that hands the batch to a thread of its own pool. As a sync
        # route it ran on BentoML's worker pool of ``threads`` (default 1): one request
        # at a time, each 100-event request a micro-batch of its own, so concurrent
        # requests never shared a micro-batch and the tagger's stages never overlapped
        # (3,000 events/s over real HTTP: 1,442/s achieved, p99 8.6 s). Each thread of
        # this pool waits in the tagger's queue, where waiting batches are applied
        # together; the pool has a thread for every batch the queue lets wait and one
        # more, so a request beyond those is answered 429 by the queue instead of
        # waiting unseen for a thread.
        caller = None
        try:
            caller = self._caller(ctx.request.headers, "serve.events")
            answer = await anyio.to_thread.run_sync(
                self.runtime.ingest_events, caller, events, limiter=self._event_threads()
            )
            # Encoded here, as /score's: BentoML's output path for a dict builds a
            # pydantic TypeAdapter and its JSON schema on every call (~0.3 ms of the
            # event loop per request, which shares the GIL with the tagger).
            return cast(
                dict[str, Any],
                Response(
                    content=to_json(answer, inf_nan_mode="null"), media_type="application/json"
                ),
            )
        except TooManyRequests as exc:
            retry = str(max(1, math.ceil(exc.retry_after_s)))
            ctx.response.status_code = exc.status
            return cast(
                dict[str, Any],
                JSONResponse(
                    {"error": exc.message, "status": exc.status},
                    exc.status,
                    headers={"Retry-After": retry},
                ),
            )
        except HttpError as exc:
            return self._refused(ctx, caller, "serve.events", exc)

    def _event_threads(self) -> anyio.CapacityLimiter:
        """The thread pool of ``POST /events`` (made on first use, in the event loop)."""
        limiter = getattr(self, "_event_limiter", None)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.runtime.event_threads)
            self._event_limiter = limiter
        return limiter

    @bentoml.api(route="/admin/reload")
    def admin_reload(self, ctx: bentoml.Context) -> dict[str, Any]:
        """Check the registry aliases and the tag store now; swap in what changed.

        Admin role only. The new model is loaded and smoke-tested while the old one
        keeps serving; the answer says what was swapped or why not.
        """
        caller = None
        try:
            caller = self._caller(ctx.request.headers, "serve.reload")
            return self.runtime.admin_reload(caller)
        except HttpError as exc:
            return self._refused(ctx, caller, "serve.reload", exc)

    def _get(self, request: Request, action: str, fn: Any) -> JSONResponse:
        caller = None
        try:
            caller = self._caller(request.headers, action)
            return JSONResponse(fn(caller))
        except HttpError as exc:
            if isinstance(exc, Forbidden):
                self.runtime.audit_denied(caller, action, exc.message)
            return JSONResponse({"error": exc.message, "status": exc.status}, exc.status)


def make_service(
    runtime_factory: RuntimeFactory, settings: ServingSettings, *, version: str | None = None
) -> Any:
    """The tag service (a BentoML service class) around ``runtime_factory``.

    Args:
        runtime_factory: Builds the runtime; called once per worker process, when
            BentoML constructs the service.
        settings: Timeout, workers, access log and body limit of the service.
        version: The version ``/docs.json`` reports (default: the installed
            ``tagsmith`` distribution's).

    Returns:
        The ``@bentoml.service`` class; assign it to a module-level name that
        ``bentoml serve module:Name`` can import.
    """
    # GET endpoints (BentoML APIs are POST-only): a FastAPI app whose class views receive
    # the service instance (BentoML binds the views defined on the service class itself).
    gets = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    # With a certificate the server speaks TLS only (uvicorn's ssl options).
    tls = (
        {"ssl": {"enabled": True, "certfile": settings.tls_cert, "keyfile": settings.tls_key}}
        if settings.tls_cert
        else {}
    )

    # BentoML wraps every request in OpenTelemetry spans (a server span, one per receive
    # and send) even at its default sample rate of 0, where none is recorded: ~0.6 ms of
    # event-loop CPU per POST /score (benchmarks.md, thirteenth session). Tracing off:
    # every URL is excluded, and the middleware hands each request straight on.
    tracing = {} if settings.tracing else {"tracing": {"excluded_urls": list(UNTRACED_URLS)}}

    @bentoml.asgi_app(gets, path="/")
    @bentoml.service(
        name="tagsmith",
        traffic={"timeout": settings.request_timeout_s},
        workers=settings.workers,
        # Every request is in the audit log already; an access log line costs CPU.
        logging={"access": {"enabled": settings.access_log}},
        **tracing,
        **tls,
    )
    class TagService(_TagServiceBase):
        """Customer tags for other services: rule and predicted tags, filtered by role."""

        def __init__(self) -> None:
            # BentoML constructs the service with no arguments, once per worker.
            super().__init__(runtime_factory)

        @gets.get("/catalog")
        def catalog(self, request: Request) -> JSONResponse:
            """The catalogue entries (tag definitions) the caller's role may see."""
            return self._get(request, "serve.catalog", self.runtime.catalog)

        @gets.get("/models")
        def models(self, request: Request) -> JSONResponse:
            """Serving model versions, when they were loaded and the last reload result."""
            return self._get(request, "serve.models", self.runtime.models)

    # The decorators turn the class into a bentoml Service; mypy still sees the class.
    service = cast(Any, TagService)
    service.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    service.add_asgi_middleware(RequestIdMiddleware)
    service.add_asgi_middleware(OpenApiMiddleware, version=version or package_version())
    install_log_policy()
    return service
