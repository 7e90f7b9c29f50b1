"""Signing in and out, sessions, CSRF: no page without a session, no form without its token."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tags.audit import AuditLog
from tests.console.conftest import sign_in
from tests.console.project import ConsoleProject

GET_PAGES = [
    "/ui/",
    "/ui/catalogue",
    "/ui/catalogue/lifecycle_stage",
    "/ui/customers",
    "/ui/customers/anything",
    "/ui/audiences",
    "/ui/audiences?expr=old_customer",
    "/ui/models",
    "/ui/models/churn-predictor",
    "/ui/models/churn-predictor/promote",
    "/ui/models/churn-predictor/rollback",
    "/ui/jobs/x",
    "/ui/runs",
]
POST_FORMS = [
    "/ui/customers",
    "/ui/audiences/save",
    "/ui/audiences/export",
    "/ui/audiences/x/delete",
    "/ui/models/churn-predictor/promote",
    "/ui/models/churn-predictor/rollback",
]


@pytest.mark.parametrize("path", GET_PAGES)
def test_no_page_without_signing_in(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=")


def test_fragment_without_session_is_401(client: TestClient) -> None:
    answer = client.get("/ui/audiences/preview?expr=old_customer", follow_redirects=False)
    assert answer.status_code == 401
    assert "Sign in" in answer.text


@pytest.mark.parametrize("path", POST_FORMS)
def test_no_form_without_signing_in(client: TestClient, path: str) -> None:
    answer = client.post(path, data={"csrf": "x", "expr": "old_customer"}, follow_redirects=False)
    assert answer.status_code == 401


def test_sign_in_sets_an_httponly_samesite_session(
    client: TestClient, console_project: ConsoleProject
) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/ui/login",
        data={"token": token.group(1), "key": console_project.keys["marketing"]},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "tagsmith_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert console_project.keys["marketing"].lower() not in cookie
    assert client.get("/ui/catalogue").status_code == 200


def test_bad_key_is_refused_and_audited(
    client: TestClient, console_project: ConsoleProject
) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/ui/login",
        data={"token": token.group(1), "key": "tsk_000000000000_" + "x" * 43},
        follow_redirects=False,
    )
    assert answer.status_code == 401
    assert "matches no stored key" in answer.text
    assert client.get("/ui/catalogue", follow_redirects=False).status_code == 303
    _flush(client)
    entries = AuditLog(console_project.project.audit_log_path).entries()
    assert any(
        e["action"] == "denied" and e["extra"].get("requested_action") == "console.signin"
        for e in entries
    )


def test_sign_in_form_needs_its_token(client: TestClient, console_project: ConsoleProject) -> None:
    client.get("/ui/login")
    answer = client.post(
        "/ui/login", data={"key": console_project.keys["admin"]}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert client.get("/ui/catalogue", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", POST_FORMS)
def test_forms_without_the_csrf_token_are_refused(
    client: TestClient, console_project: ConsoleProject, path: str
) -> None:
    sign_in(client, console_project.keys["admin"])
    for data in ({}, {"csrf": "forged"}):
        answer = client.post(
            path,
            data={**data, "expr": "old_customer", "name": "a", "reason": "r"},
            follow_redirects=False,
        )
        assert answer.status_code == 403, (path, data)
        assert "CSRF" in answer.text
    assert not console_project.project.audiences_path.exists()  # nothing saved


def test_sign_out_needs_the_token_and_ends_the_session(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/catalogue")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    assert client.post("/ui/logout", data={}, follow_redirects=False).status_code == 403
    answer = client.post("/ui/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/ui/catalogue", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(
    own_client: TestClient, own_project: ConsoleProject
) -> None:
    sign_in(own_client, own_project.keys["marketing"])
    assert own_client.get("/ui/catalogue").status_code == 200
    own_project.project.api_keys().revoke("marketing-key")
    assert own_client.get("/ui/catalogue", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_not_a_session(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    value = client.cookies.get("tagsmith_session")
    assert value
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    client.cookies.set("tagsmith_session", forged)
    assert client.get("/ui/catalogue", follow_redirects=False).status_code == 303


def test_next_only_redirects_inside_the_console(
    client: TestClient, console_project: ConsoleProject
) -> None:
    page = client.get("/ui/login?next=https://evil.example/")
    assert 'name="next" value="/ui/catalogue"' in page.text
    answer = client.get("/ui/lang/zh?next=//evil.example/x", follow_redirects=False)
    assert answer.headers["location"] == "/ui/catalogue"


def test_pages_carry_security_headers(client: TestClient, console_project: ConsoleProject) -> None:
    sign_in(client, console_project.keys["marketing"])
    answer = client.get("/ui/catalogue")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def _flush(client: TestClient) -> None:
    """Wait for the queued audit entries of the running console to be written."""
    from console.app import running_console

    audit = running_console(client.app).context.audit
    flush = getattr(audit, "flush", None)
    if callable(flush):
        flush()
