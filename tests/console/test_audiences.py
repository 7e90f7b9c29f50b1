"""Audience builder: counts equal ``tagsmith audience select``; roles, errors, save, export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from starlette.testclient import TestClient

from tags.access import TagReader
from tags.audit import AuditLog
from tags.segments import select_audience
from tests.console.conftest import sign_in
from tests.console.project import ConsoleProject

EXPRESSIONS = [
    "old_customer",
    "lifecycle_stage in ('active', 'dormant') and not old_customer",
    "rfm_segment = 'important_value' or value_tier = 'high'",
    "churn_risk = 'high' and predicted_value_score > 50",
    "churn_risk_score >= 0.3",
    "lifecycle_stage = 'nothing-has-this'",
]


def _count(html: str) -> int:
    found = re.search(r'data-count="(\d+)"', html)
    assert found is not None, html[:2000]
    return int(found.group(1))


def _reader(project: ConsoleProject, role: str) -> TagReader:
    p = project.project
    return TagReader(
        p.tag_store(),
        p.catalogue(),
        p.policy(),
        AuditLog(p.root / "oracle-audit.log"),
        role=role,
        actor="oracle",
    )


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_count_matches_audience_select(
    client: TestClient, console_project: ConsoleProject, expression: str
) -> None:
    """Oracle: ``tags.segments.select_audience``, what ``tagsmith audience select`` runs."""
    sign_in(client, console_project.keys["executive"])
    oracle = select_audience(_reader(console_project, "executive"), expression)
    page = client.get("/ui/audiences", params={"expr": expression})
    assert page.status_code == 200
    assert _count(page.text) == oracle.size
    fragment = client.get("/ui/audiences/preview", params={"expr": expression})
    assert _count(fragment.text) == oracle.size
    assert "<html" not in fragment.text  # a fragment for the live count
    first = sorted(oracle.customers["customer_id"].astype(str))[:20]
    sample = fragment.text.split('id="audience-sample"', 1)[1] if oracle.size else ""
    assert re.findall(r'">([^<]+)</a></td>', sample) == first


def test_count_of_an_older_snapshot(client: TestClient, console_project: ConsoleProject) -> None:
    sign_in(client, console_project.keys["executive"])
    reader = _reader(console_project, "executive")
    oracle = select_audience(reader, "old_customer", as_of="2024-10-01")
    page = client.get("/ui/audiences", params={"expr": "old_customer", "as_of": "2024-10-01"})
    assert _count(page.text) == oracle.size


def test_errors_show_the_caret(client: TestClient, console_project: ConsoleProject) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/audiences", params={"expr": "lifecycle_stag = 'active'"})
    assert page.status_code == 400
    assert "Did you mean &#39;lifecycle_stage&#39;?" in page.text
    caret = "lifecycle_stag = &#39;active&#39;\n^^^^^^^^^^^^^^</pre>"
    assert f'<pre class="caret">{caret}' in page.text
    fragment = client.get("/ui/audiences/preview", params={"expr": "old_customer and"})
    assert fragment.status_code == 400
    assert "caret" in fragment.text


def test_a_role_cannot_count_tags_it_may_not_read(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["service"])
    page = client.get("/ui/audiences", params={"expr": "churn_risk = 'high'"})
    assert page.status_code == 403
    assert "data-count" not in page.text
    assert "may not read" in page.text
    page = client.get("/ui/audiences", params={"expr": "lifecycle_stage = 'active'"})
    assert page.status_code == 200


def test_save_delete_and_export(own_client: TestClient, own_project: ConsoleProject) -> None:
    client = own_client
    sign_in(client, own_project.keys["marketing"])
    expression = "lifecycle_stage = 'dormant' and old_customer"
    page = client.get("/ui/audiences", params={"expr": expression})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    saved = client.post(
        "/ui/audiences/save",
        data={"csrf": csrf.group(1), "expr": expression, "name": "winback", "description": "d"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    book = own_project.project.audiences()
    assert book.get("winback").expression == expression
    assert book.get("winback").created_by == "marketing-key"
    listed = client.get("/ui/audiences")
    assert "winback" in listed.text
    export = client.post("/ui/audiences/export", data={"csrf": csrf.group(1), "expr": expression})
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    oracle = select_audience(_reader(own_project, "marketing"), expression)
    assert sorted(r["customer_id"] for r in rows) == sorted(oracle.customers["customer_id"])
    assert set(rows[0]) == {"customer_id", "lifecycle_stage", "old_customer"} if rows else True
    deleted = client.post(
        "/ui/audiences/winback/delete", data={"csrf": csrf.group(1)}, follow_redirects=False
    )
    assert deleted.status_code == 303
    assert "winback" not in book.list()
    own_project_audit = AuditLog(own_project.project.audit_log_path)
    from console.app import running_console

    running_console(client.app).context.audit.flush()  # type: ignore[arg-type, attr-defined]
    actions = [e["action"] for e in own_project_audit.entries()]
    assert {
        "console.audience",
        "console.audience.save",
        "console.export",
        "console.audience.delete",
    } <= set(actions)


def test_export_needs_the_export_action(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["service"])
    page = client.get("/ui/audiences", params={"expr": "old_customer"})
    assert "export-audience" not in page.text  # no button for a role without export
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    answer = client.post(
        "/ui/audiences/export", data={"csrf": csrf.group(1), "expr": "old_customer"}
    )
    assert answer.status_code == 403
    assert "may not export" in answer.text
