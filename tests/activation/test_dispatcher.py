"""What fires, when, under which version; syncs; the outbox's transactions."""

from __future__ import annotations

import time

import pytest

from activation.errors import DispatcherBusy
from activation.outbox import Item, Outbox
from tests.activation.conftest import World, trigger, webhook
from tests.activation.receiver import Receiver


def defs(url: str, *triggers: dict) -> dict:
    return {"destinations": [webhook("crm", url)], "triggers": list(triggers)}


def fired(receiver: Receiver) -> list[tuple[str, str, str]]:
    return sorted((e["trigger"], e["customer_id"], e["change"]) for e in receiver.events())


def test_enter_and_exit_fire_once_per_transition_and_only_after_apply(
    world: World, receiver: Receiver
) -> None:
    world.snapshot(
        [("a", "lifecycle_stage", "active"), ("b", "lifecycle_stage", "dormant")], "2024-01-31"
    )
    # Recorded before any trigger exists: never fires.
    world.snapshot(
        [("a", "lifecycle_stage", "dormant"), ("b", "lifecycle_stage", "dormant")], "2024-02-29"
    )
    world.define(
        defs(
            receiver.url,
            trigger("in", destination="crm", on_enter="lifecycle_stage = 'dormant'"),
            trigger("out", destination="crm", on_exit="lifecycle_stage = 'dormant'"),
            trigger(
                "off", destination="crm", on_enter="lifecycle_stage = 'active'", status="paused"
            ),
        )
    )
    world.apply()
    world.snapshot(
        [("a", "lifecycle_stage", "active"), ("c", "lifecycle_stage", "dormant")], "2024-03-31"
    )
    world.dispatcher().run(until="drained", max_seconds=20)
    assert fired(receiver) == [
        ("in", "c", "entered"),
        ("out", "a", "left"),
        ("out", "b", "left"),
    ]
    # Nothing new: a second pass sends nothing again.
    world.dispatcher().run(until="drained", max_seconds=5)
    assert len(receiver.events()) == 3


def test_a_lagging_dispatcher_judges_each_group_by_its_own_state_and_version(
    world: World, receiver: Receiver
) -> None:
    world.snapshot([("a", "lifecycle_stage", "active")], "2024-01-31")
    v1 = trigger(
        "t",
        destination="crm",
        on_enter="lifecycle_stage = 'dormant' and old_customer",
        include=["rfm_segment"],
    )
    world.define(defs(receiver.url, v1))
    world.apply()
    # February: a turns dormant while an old customer -> fires under v1 with February's values.
    world.snapshot(
        [
            ("a", "lifecycle_stage", "dormant"),
            ("a", "old_customer", "true"),
            ("a", "rfm_segment", "important_value"),
        ],
        "2024-02-29",
    )
    world.define(
        defs(receiver.url, {**v1, "version": 2, "on_enter": "lifecycle_stage = 'churned'"})
    )
    world.apply()
    # March: a churns (fires under v2) and loses old_customer and its segment later.
    world.snapshot(
        [("a", "lifecycle_stage", "churned"), ("a", "old_customer", "true")], "2024-03-31"
    )
    world.snapshot([("a", "lifecycle_stage", "churned")], "2024-04-30")
    world.dispatcher().run(until="drained", max_seconds=20)
    events = sorted(receiver.events(), key=lambda e: e["as_of"])
    assert [(e["trigger_version"], e["as_of"][:10], e["tags"]) for e in events] == [
        (1, "2024-02-29", {"rfm_segment": "important_value"}),
        (2, "2024-03-31", {"rfm_segment": None}),
    ]


def test_a_policy_tightened_after_apply_stops_the_trigger_and_is_audited(
    world: World, receiver: Receiver
) -> None:
    world.snapshot([("a", "lifecycle_stage", "active")], "2024-01-31")
    world.define(
        defs(receiver.url, trigger("t", destination="crm", on_enter="lifecycle_stage = 'dormant'"))
    )
    world.apply()
    world.activation.policy.roles["marketing"].deny_tags.append("lifecycle_stage")
    world.snapshot([("a", "lifecycle_stage", "dormant")], "2024-02-29")
    try:
        report = world.dispatcher().run(until="drained", max_seconds=10)
    finally:
        world.activation.policy.roles["marketing"].deny_tags.remove("lifecycle_stage")
    assert receiver.events() == []
    assert report.groups == 1
    (denied,) = [e for e in world.activation.audit.entries() if e["action"] == "denied"]
    assert denied["query"] == "trigger t"
    assert "may not read lifecycle_stage" in denied["extra"]["reason"]


def test_audience_sync_to_a_webhook_sends_the_full_list_then_changes(
    world: World, receiver: Receiver
) -> None:
    world.audiences["loyal"] = "old_customer"
    world.snapshot([("a", "old_customer", "true"), ("b", "old_customer", "true")], "2024-01-31")
    world.define(
        {
            "destinations": [webhook("crm", receiver.url)],
            "syncs": [
                {
                    **trigger("loyal-sync", destination="crm"),
                    "audience": "loyal",
                    "include": ["old_customer"],
                }
            ],
        }
    )
    world.apply()
    report = world.dispatcher().run(until="drained", max_seconds=20)
    assert [(s.kind, s.added, s.removed) for s in report.syncs] == [("full", 2, 0)]
    first = receiver.events()
    assert sorted((e["op"], e["customer_id"]) for e in first) == [("add", "a"), ("add", "b")]
    assert {e["run"]["kind"] for e in first} == {"full"}
    assert first[0]["tags"] == {"old_customer": True}
    world.snapshot([("b", "old_customer", "true"), ("c", "old_customer", "true")], "2024-02-29")
    report = world.dispatcher().run(until="drained", max_seconds=20)
    assert [(s.kind, s.added, s.removed) for s in report.syncs] == [("changes", 1, 1)]
    second = receiver.events()[len(first) :]
    assert sorted((e["op"], e["customer_id"]) for e in second) == [("add", "c"), ("remove", "a")]
    # The same snapshot is not synced twice.
    report = world.dispatcher().run(until="drained", max_seconds=5)
    assert report.syncs == []
    exports = [e for e in world.activation.audit.entries() if e["action"] == "export"]
    assert [e["role"] for e in exports] == ["marketing", "marketing"]


def test_enqueue_is_idempotent_and_a_dead_sender_is_recovered(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    items = [Item(f"k{i}", "trigger", "t", 1, "crm", f"c{i}", b'{"i":%d}' % i) for i in range(5)]
    assert outbox.enqueue(items, cursor=7) == 5
    assert outbox.enqueue(items, cursor=7) == 0
    assert outbox.cursor() == 7
    claimed = outbox.claim("crm", batch_size=3)
    assert claimed is not None
    assert claimed.n_items == 3
    assert claimed.attempt == 1
    assert claimed.body.startswith(b'{"batch":')
    assert b'"events":[{"i":0},{"i":1},{"i":2}]' in claimed.body
    # The process dies here. The next dispatcher finds the batch 'sending' and retries it.
    assert outbox.recover() == 1
    again = outbox.claim("crm", batch_size=3)
    assert again is not None
    assert (again.id, again.key, again.body, again.attempt) == (
        claimed.id,
        claimed.key,
        claimed.body,
        2,
    )
    outbox.record(again, "delivered", status=200)
    assert outbox.open_count() == 2
    assert outbox.hash_customer("c1") == outbox.hash_customer("c1") != "c1"
    outbox.close()


def test_one_dispatcher_at_a_time(world: World) -> None:
    first = world.dispatcher()
    with first.locked(), pytest.raises(DispatcherBusy, match="Another dispatcher"):
        world.dispatcher().run(until="idle", max_seconds=1)
    started = time.monotonic()
    report = world.dispatcher().run(until="idle", max_seconds=5)
    assert report.stopped == "idle"
    assert time.monotonic() - started < 5
