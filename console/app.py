"""The console's ASGI app: every route, static files, security headers, start-up.

:func:`create_app` returns a Starlette app whose routes all live under ``/ui``, so the
``tagsmith`` wiring can mount it at the root of the BentoML service (BentoML's mounts
only claim the paths their app routes). The project is read when the app starts
(its lifespan), in the service's worker process, not when the module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.context import ConsoleContext
from console.views import audiences, catalogue, customers, models, runs
from console.views.auth import auth_routes
from console.web import BASE, Console, Handler, Ui, page

__all__ = ["SecurityHeaders", "create_app", "running_console"]

log = logging.getLogger(__name__)

# No inline script or style anywhere: the policy can forbid both.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the console's security headers; pages (not static files) are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(BASE + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _routes(holder: Callable[[], Console]) -> list[BaseRoute]:
    def get(path: str, handler: Handler, **kw: Any) -> Route:
        return Route(path, page(holder, handler, **kw), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(path, page(holder, handler), methods=["POST"])

    def home(ui: Ui, form: Any) -> Response:
        return ui.redirect("/catalogue")

    auth = auth_routes(holder)
    inner: list[BaseRoute] = [
        Route("/", page(holder, home), methods=["GET"]),
        Route("/login", auth["login_get"], methods=["GET"]),
        Route("/login", auth["login_post"], methods=["POST"]),
        Route("/logout", auth["logout"], methods=["POST"]),
        Route("/lang/{lang}", auth["language"], methods=["GET"]),
        get("/catalogue", catalogue.catalogue_page),
        get("/catalogue/{tag_id}", catalogue.tag_page),
        get("/customers", customers.search_page),
        post("/customers", customers.find_customer),
        get("/customers/{ref}", customers.customer_page),
        get("/audiences", audiences.audience_page),
        get("/audiences/preview", audiences.audience_preview, fragment=True),
        post("/audiences/save", audiences.audience_save),
        post("/audiences/export", audiences.audience_export),
        post("/audiences/{name}/delete", audiences.audience_delete),
        get("/models", models.models_page),
        get("/models/{name}", models.model_page),
        get("/models/{name}/promote", models.promote_form),
        post("/models/{name}/promote", models.promote_start),
        get("/models/{name}/rollback", models.rollback_form),
        post("/models/{name}/rollback", models.rollback_start),
        get("/jobs/{job_id}", models.job_page),
        get("/runs", runs.runs_page),
        Mount("/static", StaticFiles(packages=[("console", "static")]), name="static"),
    ]

    async def to_home(request: Request) -> Response:
        return RedirectResponse(BASE + "/", status_code=307)

    return [Route(BASE, to_home), Mount(BASE, routes=inner)]


def create_app(context: ConsoleContext | Callable[[], ConsoleContext]) -> Starlette:
    """The console app, for a project context or a function that builds one at start-up.

    Args:
        context: The project as the console sees it, or a factory called once when the
            app starts (in the serving process).
    """
    running: list[Console] = []

    def holder() -> Console:
        if not running:
            raise RuntimeError("The console is not started (its lifespan has not run).")
        return running[0]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx = context() if callable(context) else context
        console = Console(ctx)
        running.append(console)
        app.state.console = console
        # Read the tag store before the first page needs it, without holding up start-up.
        threading.Thread(target=_warm, args=(console,), name="console-warm", daemon=True).start()
        try:
            yield
        finally:
            running.clear()
            close = getattr(ctx.audit, "close", None)
            if callable(close):
                close()  # write the queued audit entries

    app = Starlette(routes=_routes(holder), lifespan=lifespan)
    app.add_middleware(SecurityHeaders)
    return app


def running_console(app: Starlette) -> Console:
    """The console an app started (tests, benchmarks)."""
    console: Console = app.state.console
    return console


def _warm(console: Console) -> None:
    """Read the tag store and the registry once (MLflow's first call takes seconds)."""
    try:
        console.view.warm()
        if console.models is not None:
            for name in console.models.names():
                console.models.card(name)
    except Exception:  # the first page will try again and show what is wrong
        log.exception("Reading the tag store or the registry for the console failed")
