"""Sign in with an API key, sign out, switch language.

Sign-in is the one form without a session: it carries a token vouched for by a short-lived
signed cookie (so another site cannot sign a browser in under its own key), and the key
goes in the POST body only. A good key gets a fresh session; a bad one is audited like
the service's refusals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.i18n import LANGUAGES, Labels
from console.session import LOGIN_COOKIE, SESSION_COOKIE, same_token
from console.web import BASE, LANG_COOKIE, Console, language_of, read_form, refused, safe_next

__all__ = ["auth_routes"]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    console: Console, request: Request, *, message: str = "", status: int = 200
) -> Response:
    cookie, token = console.codec.login_token()
    labels = Labels(language_of(request), console.context.catalogue)
    response = console.render(
        "login.html.j2",
        http_status=status,
        t=labels,
        w=labels.words(),
        base=BASE,
        token=token,
        next=safe_next(request.query_params.get("next")),
        message=message,
        project=console.context.project_name,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=3600,
        path=BASE,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


def auth_routes(
    holder: Callable[[], Console],
) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """The sign-in, sign-out and language endpoints."""

    async def login_get(request: Request) -> Response:
        return _login_page(holder(), request)

    async def login_post(request: Request) -> Response:
        console = holder()
        form = await read_form(request)
        expected = console.codec.login_token_of(request.cookies.get(LOGIN_COOKIE))
        if not same_token(form.get("token"), expected):
            return refused(
                console,
                request,
                "The sign-in form was sent without its security token (or it expired). "
                "Open the sign-in page again.",
                403,
            )
        key = await run_in_threadpool(console.context.keys.verify, form.get("key", "").strip())
        if key is None:
            console.context.audit.append(
                actor="anonymous",
                role="none",
                action="denied",
                tags=[],
                n_customers=0,
                query={},
                extra={"requested_action": "console.signin", "reason": "invalid API key"},
            )
            return _login_page(
                console,
                request,
                message="Expected a valid API key (tsk_...). Got one that matches no stored key.",
                status=401,
            )
        session = console.codec.new(key.key_id, key.name, key.role)
        console.context.audit.append(
            actor=key.name,
            role=key.role,
            action="console.signin",
            tags=[],
            n_customers=0,
            query={},
            extra={},
        )
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            console.codec.dump(session),
            max_age=console.codec.max_age_s,
            path=BASE,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path=BASE)
        return response

    async def logout(request: Request) -> Response:
        console = holder()
        session = console.codec.load(request.cookies.get(SESSION_COOKIE))
        form = await read_form(request)
        if session is None or not same_token(form.get("csrf"), session.csrf):
            return refused(
                console, request, "Sign-out needs the form's security token; nothing changed.", 403
            )
        console.context.audit.append(
            actor=session.name,
            role=session.role,
            action="console.signout",
            tags=[],
            n_customers=0,
            query={},
            extra={},
        )
        response = RedirectResponse(f"{BASE}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=BASE, httponly=True, samesite="lax")
        return response

    async def language(request: Request) -> Response:
        lang = request.path_params.get("lang", "")
        target = safe_next(request.query_params.get("next"))
        response = RedirectResponse(target, status_code=303)
        if lang in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 86400,
                path=BASE,
                httponly=True,
                samesite="lax",
                secure=_secure(request),
            )
        return response

    return {
        "login_get": login_get,
        "login_post": login_post,
        "logout": logout,
        "language": language,
    }
