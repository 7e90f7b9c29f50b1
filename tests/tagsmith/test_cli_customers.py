"""``tagsmith customers show``: a profile with every visible tag and its why."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tagsmith.cli import main
from tests.explain.conftest import AS_OF, RuleProject
from tests.explain.conftest import rule_project as rule_project

RESTRICTED = {"complaint_risk", "refund_risk"}


def _show(project: RuleProject, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--project", str(project.project.root), "customers", "show", *args]
    )
    return result.exit_code, result.output


def _buyer(project: RuleProject) -> str:
    snap = project.snapshot
    rows = snap[(snap["tag_id"] == "rfm_segment")]
    return str(rows["customer_id"].iloc[0])


def test_json_profile_matches_the_snapshot_and_explains_rule_tags(
    rule_project: RuleProject,
) -> None:
    cid = _buyer(rule_project)
    code, out = _show(rule_project, cid, "--format", "json", "--role", "executive")
    assert code == 0, out
    profile = json.loads(out)
    assert profile["customer_id"] == cid
    assert profile["as_of"] == AS_OF.isoformat()
    snap = rule_project.snapshot
    mine = snap[snap["customer_id"] == cid]
    stored = {str(t): str(v) for t, v in zip(mine["tag_id"], mine["value"], strict=True)}
    lines = {t["tag_id"]: t for t in profile["tags"]}
    assert set(lines) >= RESTRICTED
    for tag_id, line in lines.items():
        assert line["value"] == stored.get(tag_id), tag_id
        assert line["display_name"]
        if line["source"] in ("rule", "fact"):
            assert line["why"]["value"] == line["value"], tag_id
            assert line["notes"] == []
    rfm = lines["rfm_segment"]
    assert rfm["value_name"]  # the value's display name from the catalogue
    assert rfm["since"] is not None
    assert set(rfm["why"]["thresholds"]) == {
        "median(recency_days)",
        "median(frequency_orders)",
        "median(monetary_total)",
    }
    assert {"recency_days", "frequency_orders", "monetary_total"} <= set(profile["features"])


def test_text_profile_shows_clauses_values_and_thresholds(rule_project: RuleProject) -> None:
    cid = _buyer(rule_project)
    code, out = _show(rule_project, cid, "--role", "marketing", "--as-of", AS_OF.date().isoformat())
    assert code == 0, out
    assert f"customer {cid} as of {AS_OF.date().isoformat()}" in out
    assert "let r_high  recency_days <= median(recency_days) ->" in out
    assert "median(recency_days) = " in out
    assert "in the population" in out
    assert "<- matched" in out


def test_a_role_without_restricted_tags_gets_no_trace_value_or_feature_of_them(
    rule_project: RuleProject,
) -> None:
    cid = _buyer(rule_project)
    code, out = _show(rule_project, cid, "--format", "json", "--role", "marketing")
    assert code == 0, out
    profile = json.loads(out)
    assert not RESTRICTED & {t["tag_id"] for t in profile["tags"]}
    assert "refund_rate" not in profile["features"]
    assert "refund_rate" not in out
    assert "complaint" not in out
    code, out = _show(rule_project, cid, "--format", "json", "--role", "service")
    assert code == 0, out
    assert {t["category"] for t in json.loads(out)["tags"]} <= {"behaviour", "value", "lifecycle"}


def test_unknown_customer_and_role_are_clear_errors(rule_project: RuleProject) -> None:
    code, out = _show(rule_project, "no-such-customer")
    assert code == 2
    assert "no-such-customer" in out
    assert "Traceback" not in out
    code, out = _show(rule_project, _buyer(rule_project), "--role", "nobody")
    assert code == 2
    assert "Traceback" not in out


def test_the_read_is_audited_without_the_customer_id(rule_project: RuleProject) -> None:
    cid = _buyer(rule_project)
    code, _ = _show(rule_project, cid, "--role", "marketing")
    assert code == 0
    log = rule_project.project.audit_log_path.read_text(encoding="utf-8")
    assert "customers_show" in log
    assert cid not in log
