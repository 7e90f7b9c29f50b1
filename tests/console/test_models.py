"""Models pages: cards by role; promote and roll back as admin (confirmed, reasoned, audited);
refused for roles without the action."""

from __future__ import annotations

import re
import time

from starlette.testclient import TestClient

from console.app import running_console
from tags.audit import AuditLog
from tests.console.conftest import sign_in
from tests.console.project import ConsoleProject
from training.registry import CHAMPION


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _wait(client: TestClient, location: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = client.get(location)
        assert page.status_code == 200, page.text
        if 'id="job-running"' not in page.text:
            assert 'http-equiv="refresh"' not in page.text
            return page.text
        assert 'http-equiv="refresh"' in page.text  # refreshes itself without JavaScript
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_models_are_shown_by_the_tag_they_produce(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["service"])  # reads value tags, not risk tags
    page = client.get("/ui/models")
    assert 'data-model="value-predictor"' in page.text
    assert "churn-predictor" not in page.text
    assert client.get("/ui/models/churn-predictor").status_code == 404
    client.cookies.clear()
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/models/churn-predictor")
    assert page.status_code == 200
    assert 'id="champion">v1<' in page.text
    assert 'id="challenger">v2<' in page.text
    assert 'id="promote"' not in page.text  # marketing may not promote: no button


def test_promote_as_admin(own_client: TestClient, own_project: ConsoleProject) -> None:
    client = own_client
    sign_in(client, own_project.keys["admin"])
    model = client.get("/ui/models/churn-predictor")
    assert 'id="promote"' in model.text
    confirm = client.get("/ui/models/churn-predictor/promote")
    assert confirm.status_code == 200
    assert 'value="2"' in confirm.text  # the challenger, preselected
    no_reason = client.post(
        "/ui/models/churn-predictor/promote",
        data={"csrf": _csrf(confirm.text), "version": "2", "reason": "  "},
    )
    assert no_reason.status_code == 400
    assert "Expected a reason" in no_reason.text
    started = client.post(
        "/ui/models/churn-predictor/promote",
        data={"csrf": _csrf(confirm.text), "version": "2", "reason": "twin of v1, new run"},
        follow_redirects=False,
    )
    assert started.status_code == 303
    assert started.headers["location"].startswith("/ui/jobs/")
    done = _wait(client, started.headers["location"])
    assert "PROMOTED: v2 is now champion; it replaced v1" in done
    assert "auc" in done
    assert "PASS" in done
    registry = own_project.project.registry()
    assert registry.alias_version("churn-predictor", CHAMPION) == "2"
    page = client.get("/ui/models/churn-predictor")
    assert 'id="champion">v2<' in page.text
    history = page.text.split('id="alias-history"', 1)[1]
    assert "admin-key" in history
    assert "twin of v1, new run" in history
    rollback = client.get("/ui/models/churn-predictor/rollback")
    assert "back to <strong>v1</strong>" in rollback.text
    started = client.post(
        "/ui/models/churn-predictor/rollback",
        data={"csrf": _csrf(rollback.text), "reason": "undo the test promotion"},
        follow_redirects=False,
    )
    done = _wait(client, started.headers["location"])
    assert "ROLLED BACK: champion moved from v2 to v1" in done
    assert registry.alias_version("churn-predictor", CHAMPION) == "1"
    entries = AuditLog(own_project.project.audit_log_path).entries()
    moves = [e for e in entries if e["action"] in ("models.promote", "models.rollback")]
    assert [(e["action"], e["actor"], e["role"]) for e in moves] == [
        ("models.promote", "admin-key", "admin"),
        ("models.rollback", "admin-key", "admin"),
    ]


def test_promote_is_refused_for_roles_without_the_action(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["marketing"])
    page = client.get("/ui/models/churn-predictor")
    csrf = _csrf(page.text)
    assert client.get("/ui/models/churn-predictor/promote").status_code == 403
    refused = client.post(
        "/ui/models/churn-predictor/promote",
        data={"csrf": csrf, "version": "2", "reason": "let me"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert "may not promote" in refused.text
    assert "admin" in refused.text  # names the roles that may
    refused = client.post("/ui/models/churn-predictor/rollback", data={"csrf": csrf, "reason": "x"})
    assert refused.status_code == 403
    registry = console_project.project.registry()
    assert registry.alias_version("churn-predictor", CHAMPION) == "1"
    running_console(client.app).context.audit.flush()  # type: ignore[arg-type, attr-defined]
    entries = AuditLog(console_project.project.audit_log_path).entries()
    denied = [e for e in entries if e["action"] == "denied" and e["actor"] == "marketing-key"]
    assert {e["extra"]["requested_action"] for e in denied} >= {
        "console.promote",
        "console.rollback",
    }


def test_jobs_are_private_to_who_started_them(
    client: TestClient, console_project: ConsoleProject
) -> None:
    sign_in(client, console_project.keys["admin"])
    assert client.get("/ui/jobs/not-a-job").status_code == 404
