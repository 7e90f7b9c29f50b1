"""The console in a real Chromium against a real ``tagsmith serve``.

Sign in, browse, open a customer, build and save an audience (with JavaScript and
without), promote as admin, be refused as a restricted role; no page without signing
in; a form stripped of its CSRF token is refused. With ``TAGSMITH_SCREENSHOTS=DIR`` the
same run writes the README's screenshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tags.access import TagReader
from tags.audit import AuditLog
from tags.segments import select_audience
from tests.console.browser import Server, browser, screenshot, start_server
from tests.console.project import ConsoleProject, build_console_project
from training.registry import CHAMPION

pytestmark = pytest.mark.slow

AUDIENCE = "lifecycle_stage in ('active', 'dormant') and not old_customer"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsoleProject, Server]]:
    work = tmp_path_factory.mktemp("browser")
    project = build_console_project(work / "proj")
    server = start_server(project.project.root, work)
    try:
        yield project, server
    finally:
        server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _sign_in(page: Any, url: str, key: str, target: str = "/ui/catalogue") -> None:
    page.goto(url + target)
    assert "/ui/login" in page.url  # sent to sign in first
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(target) + r"$"))


def _oracle(project: ConsoleProject, role: str, expression: str) -> int:
    p = project.project
    reader = TagReader(
        p.tag_store(), p.catalogue(), p.policy(), AuditLog(p.root / "oracle.log"), role=role
    )
    return select_audience(reader, expression).size


def _customer_with_history(project: ConsoleProject) -> str:
    """A customer in both runs whose lifecycle stage changed (a telling profile)."""
    long = project.project.tag_store().snapshot("2025-01-01")
    old = project.project.tag_store().snapshot("2024-10-01")
    now = long[long["tag_id"] == "lifecycle_stage"].set_index("customer_id")["value"]
    then = old[old["tag_id"] == "lifecycle_stage"].set_index("customer_id")["value"]
    both = now.index.intersection(then.index)
    changed = [c for c in both if now[c] != then[c] and now[c] != "churned"]
    return str(sorted(changed or list(both))[0])


def test_no_page_is_reachable_without_signing_in(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    _, server = served
    with browser(playwright, tmp_path / "anon") as page:
        for path in ("/ui/", "/ui/catalogue", "/ui/customers", "/ui/audiences", "/ui/models"):
            page.goto(server.url + path)
            assert "/ui/login?next=" in page.url, path
            assert page.locator("#key").is_visible()
        screenshot(page, "signin")


def test_sign_in_browse_open_a_customer_build_and_save_an_audience(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    project, server = served
    p = project.project
    with browser(playwright, tmp_path / "marketing") as page:
        _sign_in(page, server.url, project.keys["marketing"])
        rows = page.locator("#catalogue tbody tr")
        assert rows.count() == len(p.policy().visible("marketing", p.catalogue()))
        assert page.locator("#catalogue svg").count() == rows.count()  # coverage charts
        screenshot(page, "catalogue")

        page.click("a[href='/ui/catalogue/rfm_segment']")
        page.wait_for_url(re.compile("/ui/catalogue/rfm_segment$"))
        assert page.locator("figure svg polyline").count() > 0  # sizes over two runs
        screenshot(page, "tag")

        customer = _customer_with_history(project)
        page.click("nav >> text=Customers")
        page.fill("#customer_id", customer)
        page.click("#find-customer button")
        page.wait_for_url(re.compile("/ui/customers/.+"))
        assert customer not in page.url
        assert page.locator("#current-tags tbody tr").count() > 3
        assert page.locator("#tag-history thead th").count() == 3  # tag + two runs
        # Each tag's detailed why (explain): clauses with values, or model reasons.
        assert page.locator("#current-tags pre.why-detail").count() > 3
        assert "<- matched" in page.inner_text("#current-tags")
        screenshot(page, "customer")

        page.click("nav >> text=Audiences")
        page.fill("#expr", AUDIENCE)  # typed: the count arrives without submitting
        count = page.locator("#audience-count [data-count]")
        count.wait_for()
        expected = _oracle(project, "marketing", AUDIENCE)
        assert int(count.get_attribute("data-count") or -1) == expected
        assert page.url.endswith("/ui/audiences")  # no navigation: the live count
        page.fill("#expr", AUDIENCE + " and lifecycle_stag = 'x'")
        page.locator("#audience-problem pre.caret").wait_for()
        assert "Did you mean 'lifecycle_stage'?" in page.inner_text("#audience-problem")
        page.fill("#expr", AUDIENCE)
        count.wait_for()
        screenshot(page, "audiences")
        page.fill("#name", "winback")
        page.fill("#description", "lapsing one-time buyers")
        page.click("#save-audience button")
        page.wait_for_url(re.compile("notice=saved"))
        assert page.locator("#saved-audiences >> text=winback").count() == 1
        assert p.audiences().get("winback").expression == AUDIENCE
        page.click("nav >> text=Catalogue")

        page.click("a.lang")  # Chinese labels, from the catalogue
        assert "生命周期_客户状态" in page.inner_text("#catalogue")
        assert "标签目录" in page.inner_text("nav")
        screenshot(page, "catalogue-zh")
        page.click("a.lang")
        page.click("text=Sign out")
        page.wait_for_url(re.compile("/ui/login$"))
        page.goto(server.url + "/ui/catalogue")
        assert "/ui/login" in page.url


def test_the_audience_builder_works_without_javascript(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    project, server = served
    with browser(playwright, tmp_path / "nojs", javascript=False) as page:
        _sign_in(page, server.url, project.keys["marketing"], "/ui/audiences")
        page.fill("#expr", "old_customer")
        page.click("#audience-form button")
        page.wait_for_url(re.compile(r"/ui/audiences\?expr="))
        shown = page.locator("#audience-count [data-count]").get_attribute("data-count")
        assert int(shown or -1) == _oracle(project, "marketing", "old_customer")


def test_promote_as_admin(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    project, server = served
    with browser(playwright, tmp_path / "admin") as page:
        _sign_in(page, server.url, project.keys["admin"], "/ui/models")
        screenshot(page, "models")
        page.click("a[href='/ui/models/churn-predictor']")
        assert page.inner_text("#champion") == "v1"
        assert page.inner_text("#challenger") == "v2"
        page.click("#promote")
        page.wait_for_url(re.compile("/promote$"))
        page.fill("#reason", "v2 retrained on the latest facts")
        page.click("#confirm-form button[type=submit]")
        page.wait_for_url(re.compile("/ui/jobs/"))
        verdict = page.locator("#job-verdict")
        verdict.wait_for(timeout=120_000)  # the page refreshes itself until the job ends
        assert "PROMOTED: v2 is now champion" in verdict.inner_text()
        assert page.locator("table.gates .pass").count() >= 1
        screenshot(page, "promotion")
        page.click("text=Back")
        assert page.inner_text("#champion") == "v2"
        assert "v2 retrained on the latest facts" in page.inner_text("#alias-history")
    registry = project.project.registry()
    assert registry.alias_version("churn-predictor", CHAMPION) == "2"


def test_refused_as_a_restricted_role(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    project, server = served
    with browser(playwright, tmp_path / "service") as page:
        _sign_in(page, server.url, project.keys["service"])
        assert "churn_risk" not in page.content()
        assert "age_band" not in page.content()
        page.goto(server.url + "/ui/models/churn-predictor")
        assert "may see" in page.inner_text("main")  # not a model this role may see
        response = page.goto(server.url + "/ui/models/value-predictor/promote")
        assert response is not None
        assert response.status == 403
        assert "may not promote" in page.inner_text("main")
        page.goto(server.url + "/ui/audiences")
        page.fill("#expr", "churn_risk = 'high'")
        problem = page.locator("#audience-problem")
        problem.wait_for()
        assert "may not read" in problem.inner_text()
        assert page.locator("[data-count]").count() == 0


def test_a_form_without_its_csrf_token_is_refused(
    served: tuple[ConsoleProject, Server], playwright: Any, tmp_path: Path
) -> None:
    project, server = served
    with browser(playwright, tmp_path / "csrf") as page:
        _sign_in(page, server.url, project.keys["marketing"], "/ui/audiences")
        page.fill("#expr", "old_customer")
        page.locator("#save-audience").wait_for()
        page.fill("#name", "forged")
        page.evaluate("document.querySelector('#save-audience input[name=csrf]').remove()")
        with page.expect_navigation():
            page.click("#save-audience button")
        assert "CSRF" in page.inner_text("main")
    assert "forged" not in project.project.audiences().list()
