"""Catalogue, tag, runs pages: role-filtered, labelled in Chinese or English, charts inline."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tags.access import TagReader
from tags.audit import AuditLog
from tests.console.conftest import sign_in
from tests.console.project import ConsoleProject

HIDDEN_FROM_SERVICE = {"churn_risk", "age_band", "complaint_risk", "refund_risk"}


def _rows(html: str, table: str) -> set[str]:
    block = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return set(re.findall(r'data-tag="([a-z0-9_]+)"', block))


def test_catalogue_lists_exactly_the_tags_the_role_may_read(
    client: TestClient, console_project: ConsoleProject
) -> None:
    project = console_project.project
    shown = {}
    for role in ("marketing", "service", "executive"):
        client.cookies.clear()
        sign_in(client, console_project.keys[role])
        page = client.get("/ui/catalogue")
        assert page.status_code == 200
        shown[role] = _rows(page.text, "catalogue")
        assert shown[role] == project.policy().visible(role, project.catalogue()), role
    assert not HIDDEN_FROM_SERVICE & shown["service"]
    assert shown["executive"] >= HIDDEN_FROM_SERVICE


def test_catalogue_counts_match_the_tag_store(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/catalogue")
    store = console_project.project.tag_store()
    latest = store.snapshot()
    holders = latest.groupby("tag_id")["customer_id"].nunique()
    row = page.text.split('data-tag="old_customer"', 1)[1].split("</tr>", 1)[0]
    assert f">{holders['old_customer']:,}<" in row
    assert "<svg" in row  # coverage over the recent runs


def test_service_role_never_sees_a_hidden_tag_anywhere(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["service"])
    for path in ("/ui/catalogue", "/ui/runs", "/ui/models", "/ui/audiences"):
        page = client.get(path)
        assert page.status_code == 200, path
        for tag in HIDDEN_FROM_SERVICE:
            assert tag not in page.text, (path, tag)
    for tag in HIDDEN_FROM_SERVICE:
        assert client.get(f"/ui/catalogue/{tag}").status_code == 404


def test_tag_page_shows_definition_values_and_sizes_over_time(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/catalogue/lifecycle_stage")
    assert page.status_code == 200
    text = page.text
    assert "recency_days &lt;= greatest(1.5 * gap_mean_days, 30)" in text  # rule text, escaped
    assert "crm-analytics" in text
    store = console_project.project.tag_store()
    sizes = store.snapshot().query("tag_id == 'lifecycle_stage'")["value"].value_counts()
    values = text.split('id="values"', 1)[1].split("</table>", 1)[0]
    for value, count in sizes.items():
        assert f'<code class="small">{value}</code></td><td class="num">{count:,}<' in values
    chart = text.split("<figure>", 1)[1]
    assert chart.startswith("<svg")
    assert "<polyline" in chart  # two runs: a line per value


def test_model_tag_page_shows_bands(client: TestClient, console_project: ConsoleProject) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/catalogue/churn_risk")
    assert page.status_code == 200
    assert "score &ge; 0.6" in page.text
    assert 'href="/ui/models/churn-predictor"' in page.text


def test_chinese_and_english_labels_come_from_the_catalogue(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    english = client.get("/ui/catalogue/lifecycle_stage", headers={"accept-language": "en"})
    assert "Lifecycle stage" in english.text
    assert "dormant" in english.text
    client.get("/ui/lang/zh?next=/ui/catalogue/lifecycle_stage")
    chinese = client.get("/ui/catalogue/lifecycle_stage")
    assert "生命周期_客户状态" in chinese.text
    assert "沉睡客户" in chinese.text
    assert "标签目录" in chinese.text  # the console's own words too
    assert 'lang="zh-CN"' in chinese.text


def test_runs_page_lists_runs_and_flags(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/runs")
    assert page.status_code == 200
    runs = console_project.project.tag_store().runs()
    for run_id in runs["run_id"]:
        assert run_id in page.text
    reader = TagReader(
        console_project.project.tag_store(),
        console_project.project.catalogue(),
        console_project.project.policy(),
        AuditLog(console_project.project.root / "scratch-audit.log"),
        role="marketing",
    )
    flagged = reader.coverage()
    flagged = flagged[flagged["flag"] != ""]
    for tag_id in set(flagged["tag_id"]):
        assert f'href="/ui/catalogue/{tag_id}"' in page.text.split('id="runs"')[0]


@pytest.mark.parametrize("role", ["service", "marketing"])
def test_runs_rows_never_count_hidden_tags(
    client: TestClient, console_project: ConsoleProject, role: str
) -> None:
    sign_in(client, console_project.keys[role])
    page = client.get("/ui/runs")
    project = console_project.project
    visible = project.policy().visible(role, project.catalogue())
    store = project.tag_store()
    latest = store.latest_as_of()
    snapshot = store.snapshot(latest)
    rows = int(snapshot["tag_id"].isin(visible).sum())
    run_id = store.run_info(latest).run_id
    row = page.text.split(run_id, 1)[1].split("</tr>", 1)[0]
    assert f">{rows:,}<" in row
