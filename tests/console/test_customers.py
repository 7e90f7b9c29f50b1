"""Customer pages: found by a POSTed id, linked by an opaque reference, role-filtered, audited."""

from __future__ import annotations

import re
from typing import Any, cast

import pandas as pd
from starlette.testclient import TestClient

from console.app import running_console
from tags.audit import AuditLog
from tests.console.conftest import sign_in
from tests.console.project import ConsoleProject


def _csrf(client: TestClient) -> str:
    page = client.get("/ui/customers")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _open(client: TestClient, customer_id: str) -> str:
    answer = client.post(
        "/ui/customers",
        data={"csrf": _csrf(client), "customer_id": customer_id},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/ui/customers/")
    assert customer_id not in location  # ids never appear in URLs (access logs, history)
    return location


def _current(html: str) -> dict[str, str]:
    block = html.split('id="current-tags"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-tag="([a-z0-9_]+)">(.*?)</tr>', block, flags=re.S)
    return {tag: body for tag, body in rows}


def test_profile_shows_the_stored_tags_the_role_may_read(
    client: TestClient, console_project: ConsoleProject
) -> None:
    project = console_project.project
    store = project.tag_store()
    latest = store.snapshot()
    customer = latest.query("tag_id == 'churn_risk'")["customer_id"].astype(str).iloc[3]
    for role in ("executive", "service"):
        client.cookies.clear()
        sign_in(client, console_project.keys[role])
        page = client.get(_open(client, customer))
        assert page.status_code == 200
        visible = project.policy().visible(role, project.catalogue())
        mine = latest[(latest["customer_id"] == customer) & latest["tag_id"].isin(visible)]
        current = _current(page.text)
        assert set(current) == set(mine["tag_id"]), role
        for row in mine.itertuples():
            shown = "yes" if row.value == "true" else row.value
            assert shown in current[row.tag_id], (row.tag_id, row.value)
        if role == "service":
            assert "churn_risk" not in page.text
            assert "age_band" not in page.text


def test_profile_explains_values_and_shows_history(
    client: TestClient, console_project: ConsoleProject
) -> None:
    store = console_project.project.tag_store()
    history = store.history(console_project.customer_ids[0])
    sign_in(client, console_project.keys["executive"])
    page = client.get(_open(client, console_project.customer_ids[0]))
    current = _current(page.text)
    latest = history[history["as_of"] == history["as_of"].max()]
    stage = latest.query("tag_id == 'lifecycle_stage'")["value"].iloc[0]
    if stage != "churned":
        assert "case " in current["lifecycle_stage"]  # the case that gives the value
    churn = latest.query("tag_id == 'churn_risk'").iloc[0]
    assert f"score {churn['score']:.4g} in band" in current["churn_risk"]
    assert "churn-predictor/" in current["churn_risk"]
    timeline = page.text.split('id="tag-history"', 1)[1].split("</table>", 1)[0]
    dates = sorted({f"{pd.Timestamp(d):%Y-%m-%d}" for d in history["as_of"]})
    assert len(dates) == 2
    for d in dates:
        assert f"<th>{d}</th>" in timeline


def test_profile_reads_are_audited_with_hashed_ids_only(
    client: TestClient, console_project: ConsoleProject
) -> None:
    customer = console_project.customer_ids[5]
    sign_in(client, console_project.keys["marketing"])
    client.get(_open(client, customer))
    console = running_console(client.app)  # type: ignore[arg-type]
    console.context.audit.flush()  # type: ignore[attr-defined]
    log_text = console_project.project.audit_log_path.read_text()
    assert customer not in log_text
    entries = AuditLog(console_project.project.audit_log_path).entries()
    reads = [e for e in entries if e["action"] == "console.customer"]
    assert reads
    # The same keyed hash the tag service writes, so one search finds every read.
    from serving.access import Access

    service_access = Access(
        governance=cast(Any, None),
        audit=cast(Any, None),
        verify_key=lambda _: None,
        id_pepper=console_project.project.api_keys().pepper,
    )
    assert service_access.hash_ids([customer])[0] in reads[-1]["query"]


def test_unknown_customer_and_altered_links(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    answer = client.post(
        "/ui/customers", data={"csrf": _csrf(client), "customer_id": "nobody-here"}
    )
    assert answer.status_code == 404
    assert "No such customer" in answer.text
    location = _open(client, console_project.customer_ids[1])
    ref = location.rsplit("/", 1)[1]
    altered = ref[:-3] + ("AAA" if not ref.endswith("AAA") else "BBB")
    assert client.get(f"/ui/customers/{altered}").status_code == 404
    assert client.get("/ui/customers/not-a-reference").status_code == 404


def test_profile_shows_each_clause_with_values_and_model_reasons(
    client: TestClient, console_project: ConsoleProject
) -> None:
    """The detailed why (explain package): rule clauses with the customer's values and
    the run's thresholds; model reasons adding up to the raw score."""
    project = console_project.project
    latest = project.tag_store().snapshot()
    customer = latest.query("tag_id == 'rfm_segment'")["customer_id"].astype(str).iloc[0]
    sign_in(client, console_project.keys["executive"])
    page = client.get(_open(client, customer))
    assert page.status_code == 200
    assert 'id="explain-problem"' not in page.text
    current = _current(page.text)
    rfm = current["rfm_segment"]
    assert "why-detail" in rfm
    assert "recency_days &lt;= median(recency_days)" in rfm
    assert "in the population" in rfm
    assert "&lt;- matched" in rfm
    if "churn_risk" in current:
        assert "base " in current["churn_risk"]
        assert "-&gt; score" in current["churn_risk"]


def test_detailed_why_never_shows_what_the_role_may_not_see(
    client: TestClient, console_project: ConsoleProject
) -> None:
    project = console_project.project
    latest = project.tag_store().snapshot()
    customer = latest.query("tag_id == 'rfm_segment'")["customer_id"].astype(str).iloc[1]
    sign_in(client, console_project.keys["marketing"])
    page = client.get(_open(client, customer))
    assert page.status_code == 200
    assert "refund_rate" not in page.text
    assert "count(complaint" not in page.text


def test_profile_renders_when_no_tag_has_a_detailed_why(console_project: ConsoleProject) -> None:
    """Rows without an explanation (no explainer, or none for that tag) have no
    ``why_lines`` / ``notes``; the strict template used to fail on them with HTTP 500."""
    from dataclasses import replace

    from console.app import create_app
    from tagsmith.console_app import build_console_context

    project = console_project.project
    context = replace(build_console_context(project), explain=None)
    customer = console_project.customer_ids[0]
    with TestClient(create_app(context), base_url="http://testserver") as plain:
        sign_in(plain, console_project.keys["executive"])
        page = plain.get(_open(plain, customer))
    assert page.status_code == 200, page.text[:500]
    current = _current(page.text)
    latest = project.tag_store().snapshot(customers=[customer])
    visible = project.policy().visible("executive", project.catalogue())
    assert set(current) == set(latest[latest["tag_id"].isin(visible)]["tag_id"])
    assert "why-detail" not in page.text
