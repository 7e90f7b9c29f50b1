"""The console's request plumbing: the running :class:`Console`, per-request :class:`Ui`,
and the :func:`page` wrapper every route goes through.

:func:`page` is the only way a handler is reached: it loads the signed session, checks
its API key still exists with the same role (so revoking a key ends its sessions),
refuses POSTs whose form lacks the session's CSRF token, builds the :class:`Viewer`,
runs the handler off the event loop, and turns errors into pages that say what went
wrong (never a traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jinja2
import pandas as pd
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from console.access import Viewer, viewer_for
from console.audiences import AudienceDesk
from console.context import ConsoleContext
from console.data import StoreView
from console.i18n import Labels, pick_language
from console.jobs import JobBoard
from console.models import ModelDesk
from console.session import (
    SESSION_COOKIE,
    CustomerRefs,
    Session,
    SessionCodec,
    same_token,
)
from serving.keys import ApiKey
from tags.errors import AccessDenied, TagsError
from training.errors import TrainingError

__all__ = [
    "BASE",
    "LANG_COOKIE",
    "Console",
    "Handler",
    "Ui",
    "language_of",
    "page",
    "read_form",
    "refused",
    "safe_next",
]

log = logging.getLogger(__name__)

BASE = "/ui"
LANG_COOKIE = "tagsmith_lang"
# Errors whose message is for the user (they say what was expected and what was got).
USER_ERRORS: tuple[type[Exception], ...] = (TagsError, TrainingError)

Form = Mapping[str, str]
Handler = Callable[["Ui", Form], Response]


def safe_next(target: str | None) -> str:
    """A redirect target inside the console (anything else goes to the catalogue)."""
    unsafe = ("\\", "\n", "\r")
    if target and target.startswith(BASE + "/") and not any(c in target for c in unsafe):
        return target
    return BASE + "/catalogue"


def _missing(value: Any) -> bool:
    """None, NaN, NA or NaT (template filters show a dash)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class Console:
    """The running console of one project: context, caches, desks and templates.

    Args:
        context: The project as the console sees it.
    """

    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        cfg = context.config
        self.codec = SessionCodec(context.secret, max_age_s=int(cfg.session_hours * 3600))
        self.refs = CustomerRefs(context.secret)
        catalogue = context.catalogue
        tags = list(catalogue.tags.values())
        self.view = StoreView(
            context.tag_store,
            tag_kinds={t.id: (t.value_type, t.source) for t in tags},
            expected_tags=[t.id for t in tags if t.status == "active" and t.source != "model"],
            threshold=context.share_shift_threshold,
            history_runs=cfg.history_runs,
        )
        self.audiences = AudienceDesk(
            self.view, context.audiences, catalogue, sample_rows=cfg.sample_rows
        )
        self.models = (
            ModelDesk(context.models, context.model_tags) if context.models is not None else None
        )
        self.jobs = JobBoard(USER_ERRORS)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["pct"] = lambda v: "-" if _missing(v) else f"{100 * v:.1f}%"
        self.env.filters["num"] = lambda v: "-" if _missing(v) else f"{int(v):,}"
        self.env.filters["day"] = lambda ts: "" if _missing(ts) else f"{ts:%Y-%m-%d}"

    def key(self, key_id: str) -> ApiKey | None:
        """The stored key with id ``key_id`` (``None`` once revoked)."""
        for key in self.context.keys.list_keys():
            if key.key_id == key_id:
                return key
        return None

    def hash_ids(self, customer_ids: list[str]) -> list[str]:
        """Audit-log hashes of customer ids (the tag service's)."""
        return self.context.hash_ids(customer_ids)

    def render(self, template: str, /, *, http_status: int = 200, **values: Any) -> HTMLResponse:
        """A template rendered to an HTML response."""
        page = self.env.get_template(template).render(**values)
        return HTMLResponse(page, status_code=http_status)


@dataclass
class Ui:
    """One request of a signed-in viewer, as handlers see it.

    Attributes:
        request: The request.
        console: The running console.
        session: The signed session.
        viewer: Who is asking, under the access policy.
        labels: Words and catalogue names in the reader's language.
        query: The query parameters.
    """

    request: Request
    console: Console
    session: Session
    viewer: Viewer
    labels: Labels
    query: Mapping[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """Absolute path of a console page (``/catalogue`` -> ``/ui/catalogue``)."""
        return BASE + path

    def redirect(self, path: str) -> RedirectResponse:
        """303 to a console page."""
        return RedirectResponse(self.url(path), status_code=303)

    def render(self, template: str, *, status: int = 200, nav: str = "", **values: Any) -> Response:
        """Render a page with the layout's context (viewer, words, CSRF token, header)."""
        known = self.console.view.known()
        return self.console.render(
            template,
            http_status=status,
            ui=self,
            t=self.labels,
            w=self.labels.words(),
            base=BASE,
            csrf=self.session.csrf,
            viewer=self.viewer,
            nav=nav,
            known=known,
            project=self.console.context.project_name,
            here=self.request.url.path,
            **values,
        )

    def error(self, message: str, *, status: int) -> Response:
        """An error page that says what went wrong."""
        return self.render("error.html.j2", status=status, message=message)


def language_of(request: Request) -> str:
    return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def refused(console: Console, request: Request, message: str, status: int) -> Response:
    """A page for requests without a valid session or token (no viewer to show)."""
    labels = Labels(language_of(request), console.context.catalogue)
    return console.render(
        "refused.html.j2",
        http_status=status,
        t=labels,
        w=labels.words(),
        base=BASE,
        message=message,
        project=console.context.project_name,
    )


async def read_form(request: Request) -> dict[str, str]:
    data = await request.form(max_files=0, max_fields=64)
    return {k: v for k, v in data.items() if not isinstance(v, UploadFile)}


def page(
    holder: Callable[[], Console], handler: Handler, *, fragment: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint running ``handler`` for a signed-in viewer (see the module docstring).

    Args:
        holder: Returns the running console.
        handler: ``(ui, form) -> response``; runs in a worker thread.
        fragment: The endpoint answers scripts (no redirect to the sign-in page).
    """

    async def endpoint(request: Request) -> Response:
        console = holder()
        session = console.codec.load(request.cookies.get(SESSION_COOKIE))
        key = console.key(session.key_id) if session is not None else None
        if session is None or key is None or key.role != session.role:
            if request.method == "GET" and not fragment:
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"{BASE}/login?next={target}", status_code=303)
            return refused(console, request, "Sign in first: no valid session.", 401)
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await read_form(request)
            if not same_token(form.get("csrf"), session.csrf):
                return refused(
                    console,
                    request,
                    "This form was sent without its security (CSRF) token, or with a stale "
                    "one. Nothing was changed: reload the page and try again.",
                    403,
                )
        viewer = viewer_for(
            key.name,
            key.role,
            console.context.policy,
            console.context.catalogue,
            console.context.audit,
        )
        ui = Ui(
            request=request,
            console=console,
            session=session,
            viewer=viewer,
            labels=Labels(language_of(request), console.context.catalogue),
            query=dict(request.query_params),
        )
        return await run_in_threadpool(_guarded, handler, ui, form)

    return endpoint


def _guarded(handler: Handler, ui: Ui, form: Form) -> Response:
    try:
        return handler(ui, form)
    except AccessDenied as exc:
        return ui.error(str(exc), status=403)
    except USER_ERRORS as exc:
        return ui.error(str(exc), status=400)
    except Exception:
        log.exception("Console page %s failed", ui.request.url.path)
        return ui.error(
            "The page failed with an internal error; the service log has the details.",
            status=500,
        )
