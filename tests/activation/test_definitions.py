"""Trigger, sync and destination definitions: schema, cross-checks, role bounds, plan/apply."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from activation.definitions import check_definitions, load_definitions
from activation.errors import DefinitionError, PlanRefused
from activation.versions import TriggerHistory, version_for
from tests.activation.conftest import World, trigger, webhook


def check(world: World):
    defs = load_definitions(world.root / "triggers")
    return defs, check_definitions(
        defs,
        catalogue=world.activation.catalogue,
        policy=world.activation.policy,
        audiences=world.audiences,
    )


def test_loader_names_the_file_the_item_and_the_key(world: World) -> None:
    world.define({"triggers": [{**trigger("t1", destination="d"), "on_enter": "x", "colour": 1}]})
    with pytest.raises(DefinitionError, match=r"defs\.yaml: trigger 't1': key 'colour'"):
        load_definitions(world.root / "triggers")
    world.define({"triggers": [trigger("t1", destination="d")]})
    with pytest.raises(DefinitionError, match="exactly one of 'on_enter' and 'on_exit'"):
        load_definitions(world.root / "triggers")
    world.define({"destinations": [webhook("d", "ftp://example.com/x")]})
    with pytest.raises(DefinitionError, match="http:// or https://"):
        load_definitions(world.root / "triggers")
    world.define({"destinations": [webhook("d", "https://u:p@example.com/x")]})
    with pytest.raises(DefinitionError, match="credentials do not belong in the URL"):
        load_definitions(world.root / "triggers")
    world.define({"destinations": [webhook("d", "https://example.com/x")]}, "a.yaml")
    world.define({"destinations": [webhook("d", "https://example.com/y")]}, "b.yaml")
    with pytest.raises(DefinitionError, match="defined twice"):
        load_definitions(world.root / "triggers")


def test_role_bounds_what_a_trigger_may_read(world: World) -> None:
    # complaint_risk is restricted: marketing may not see it, executive may.
    world.define(
        {
            "destinations": [webhook("crm", "https://crm.example.com/h")],
            "triggers": [
                trigger(
                    "care",
                    destination="crm",
                    on_enter="complaint_risk and lifecycle_stage = 'active'",
                    include=["rfm_segment"],
                )
            ],
        }
    )
    _, result = check(world)
    assert any("may not read complaint_risk (risk, restricted)" in p for p in result.problems)
    world.define(
        {
            "destinations": [webhook("crm", "https://crm.example.com/h")],
            "triggers": [
                trigger(
                    "care",
                    destination="crm",
                    on_enter="lifecycle_stage = 'active'",
                    include=["complaint_risk"],
                )
            ],
        }
    )
    _, result = check(world)
    assert any("complaint_risk" in p for p in result.problems)
    # The admin role sees no restricted tag and may not export: refused for both reasons.
    world.define(
        {
            "destinations": [webhook("crm", "https://crm.example.com/h")],
            "triggers": [trigger("care", destination="crm", on_enter="old_customer", role="admin")],
        }
    )
    _, result = check(world)
    assert any(
        "role 'admin' lacks the action(s) ['audience', 'export']" in p for p in result.problems
    )


def test_scores_purposes_destinations_and_expressions_are_checked(world: World) -> None:
    world.define(
        {
            "destinations": [
                webhook("crm", "https://crm.example.com/h", purpose="service"),
                {
                    "name": "drop",
                    "type": "file",
                    "path": "out",
                    "owner": "x",
                    "purpose": "marketing",
                },
            ],
            "triggers": [
                trigger("a", destination="crm", on_enter="churn_risk_score > 0.7"),
                trigger("b", destination="drop", on_exit="old_customer"),
                trigger("c", destination="nowhere", on_exit="old_customer"),
                trigger("d", destination="drop", on_enter="lifecycle_stag = 'active'"),
            ],
        }
    )
    _, result = check(world)
    text = "\n".join(result.problems)
    assert "reads scores ['churn_risk_score']" in text
    assert "purpose 'marketing' differs from destination 'crm'" in text
    assert "triggers deliver events to webhook destinations" in text
    assert "destination 'nowhere' is not defined" in text
    assert "Unknown name 'lifecycle_stag'" in text


def test_unsigned_webhooks_and_unset_secrets_are_warnings(world: World) -> None:
    world.define(
        {
            "destinations": [
                {**webhook("a", "https://a.example.com"), "secret_env": None},
                webhook("b", "https://b.example.com", secret_env="NOT_SET_ANYWHERE_42"),
            ]
        }
    )
    defs = load_definitions(world.root / "triggers")
    result = check_definitions(
        defs,
        catalogue=world.activation.catalogue,
        policy=world.activation.policy,
        audiences={},
        environ={},
    )
    assert not result.problems
    assert any("not signed" in w for w in result.warnings)
    assert any("NOT_SET_ANYWHERE_42 is not set" in w for w in result.warnings)


def _apply(world: World, position: int = 0) -> int:
    defs, result = check(world)
    version, _ = world.activation.history.apply(
        defs, result, position=position, applied_at=datetime.now(UTC), applied_by="t"
    )
    return version


def test_plan_and_apply_govern_versions_and_status(world: World) -> None:
    base = {"destinations": [webhook("crm", "https://crm.example.com/h")]}
    world.define({**base, "triggers": [trigger("t", destination="crm", on_enter="old_customer")]})
    assert _apply(world, position=7) == 1
    assert _apply(world) == 1  # nothing changed: nothing recorded
    changed = trigger("t", destination="crm", on_enter="not old_customer")
    world.define({**base, "triggers": [changed]})
    defs, result = check(world)
    plan = world.activation.history.plan(defs, result)
    assert any("on_enter changed, so the version must go up" in p for p in plan.problems)
    with pytest.raises(PlanRefused):
        _apply(world)
    world.define({**base, "triggers": [{**changed, "version": 2}]})
    assert _apply(world, position=9) == 2
    world.define({**base, "triggers": [{**changed, "version": 2, "status": "draft"}]})
    defs, result = check(world)
    assert any(
        "draft -> active <-> paused" in p
        for p in world.activation.history.plan(defs, result).problems
    )
    world.define(base)
    defs, result = check(world)
    assert any(
        "is active: pause or deprecate it" in p
        for p in world.activation.history.plan(defs, result).problems
    )
    world.define({**base, "triggers": [{**changed, "version": 2, "status": "paused"}]})
    assert _apply(world) == 3
    world.define(base)
    assert _apply(world) == 4
    moved = {"destinations": [webhook("crm", "https://crm2.example.com/h", version=2)]}
    world.define(moved)
    defs, result = check(world)
    plan = world.activation.history.plan(defs, result)
    assert [c.describe() for c in plan.changes] == ["~ destination crm (v1 -> v2): url, version"]
    assert _apply(world) == 5
    versions = world.activation.history.all()
    assert [v.position for v in versions] == [7, 9, 0, 0, 0]
    assert version_for(versions[:2], 6) is None
    assert version_for(versions[:2], 7).version == 1
    assert version_for(versions[:2], 9).version == 2


def test_a_sync_pins_its_saved_audience_and_a_changed_audience_needs_a_new_version(
    world: World,
) -> None:
    world.audiences["vip"] = "rfm_segment = 'important_value'"
    world.define(
        {
            "destinations": [
                {
                    "name": "drop",
                    "type": "file",
                    "path": "out",
                    "owner": "x",
                    "purpose": "marketing",
                }
            ],
            "syncs": [{**trigger("vip-list", destination="drop"), "audience": "vip"}],
        }
    )
    assert _apply(world) == 1
    assert world.activation.history.load().pinned == {"vip-list": "rfm_segment = 'important_value'"}
    world.audiences["vip"] = "rfm_segment = 'important_value' and old_customer"
    defs, result = check(world)
    plan = world.activation.history.plan(defs, result)
    assert any("audience_expression changed" in p for p in plan.problems)
    del world.audiences["vip"]
    _, result = check(world)
    assert any("saved audience 'vip' does not exist" in p for p in result.problems)


def test_history_refuses_unknown_versions(tmp_path: Path) -> None:
    history = TriggerHistory(tmp_path / "v")
    assert history.load() is None
    with pytest.raises(DefinitionError, match="none applied yet"):
        history.load(3)
