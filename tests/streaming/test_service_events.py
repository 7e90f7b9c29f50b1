"""POST /events through the service runtime wired to a real project (stores, champions)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from click.testing import CliRunner

from serving.access import Caller
from serving.errors import Forbidden
from serving.runtime import ServingRuntime
from tags.live import live_rows
from tags.transitions import TransitionLog
from tagsmith.app import build_runtime
from tagsmith.cli import main
from tagsmith.live import ServiceIngest
from tests.serving import project_fixture
from tests.serving.project_fixture import ServedProject

EXEC = Caller("boss", "executive")
INGEST = Caller("shop", "ingest")


@pytest.fixture(scope="module", autouse=True)
def _project_registry_only() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    return project_fixture.build(tmp_path_factory.mktemp("proj") / "p", n_customers=150)


@pytest.fixture
def runtime(served: ServedProject) -> Iterator[ServingRuntime]:
    rt = build_runtime(served.project)
    rt.start()
    yield rt
    rt.stop()


def _tags(runtime: ServingRuntime, cid: str) -> dict[str, dict[str, object]]:
    answer = runtime.tags(EXEC, [cid])
    return {t["tag_id"]: t for t in answer["results"][0]["tags"]}


def _lapsed(served: ServedProject) -> str:
    stages = served.tags[served.tags["tag_id"] == "lifecycle_stage"]
    churned = stages[stages["value"].astype(str).isin(["churned", "dormant"])]
    return str(churned["customer_id"].iloc[0])


def test_a_purchase_now_changes_a_lapsed_customers_tags(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    cid = _lapsed(served)
    before = _tags(runtime, cid)
    assert before["lifecycle_stage"]["value"] in ("churned", "dormant")
    seq = TransitionLog(served.project.tag_store()).last_seq()
    now = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=5)
    event = {
        "event_id": f"buy-{cid}",
        "customer_id": cid,
        "occurred_at": now.isoformat(),
        "event_type": "purchase",
        "amount": 80.0,
    }
    with pytest.raises(Forbidden):
        runtime.ingest_events(Caller("web", "service"), [event])
    answer = runtime.ingest_events(INGEST, [event])
    assert answer["accepted"] == 1
    assert answer["customers_retagged"] == 1
    assert answer["thresholds_from_run"] == served.run_id
    after = _tags(runtime, cid)
    assert after["lifecycle_stage"]["value"] == "active"
    assert "updated_at" in after["lifecycle_stage"]
    assert after["churn_risk"]["source"] == "model"
    assert after["churn_risk"]["as_of"] > before["churn_risk"]["as_of"]
    # The change is a transition: triggers see it.
    changes = TransitionLog(served.project.tag_store()).transitions(seq, 10**9)
    mine = changes[(changes["customer_id"] == cid) & (changes["tag_id"] == "lifecycle_stage")]
    assert mine["to_value"].tolist() == ["active"]
    assert set(changes["source"]) == {"live"}
    # Sent again: stored once, nothing changes.
    again = runtime.ingest_events(INGEST, [event])
    assert (again["accepted"], again["duplicates"], again["tag_changes"]) == (0, 1, 0)
    # A new service process serves the live values (they are in the tag store).
    fresh = build_runtime(served.project)
    fresh.start()
    try:
        assert _tags(fresh, cid)["lifecycle_stage"]["value"] == "active"
    finally:
        fresh.stop()


def test_a_batch_run_reconciles_live_values(served: ServedProject, runtime: ServingRuntime) -> None:
    cid = _lapsed(served)
    now = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=5)
    event = {
        "event_id": f"buy-{cid}",
        "customer_id": cid,
        "occurred_at": now.isoformat(),
        "event_type": "purchase",
        "amount": 80.0,
    }
    runtime.ingest_events(INGEST, [event])
    store = served.project.tag_store()
    with store.reader() as con:
        assert len(live_rows(con))
    day = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)).date().isoformat()
    result = CliRunner().invoke(
        main,
        ["--project", str(served.project.root), "tags", "run", "--role", "admin", "--as-of", day],
    )
    assert result.exit_code == 0, result.output
    with store.reader() as con:
        assert not len(live_rows(con))
    # The batch read the live events: the purchase is in its snapshot.
    snap = store.snapshot(day, customers=[cid])
    assert snap.set_index("tag_id").loc["lifecycle_stage", "value"] == "active"


def test_in_process_writes_reach_tags_without_the_poll(served: ServedProject) -> None:
    """Writes of this process that do not come through POST /events (the in-service
    stream consumer) are merged as they commit, not at the next poll of the store."""
    rt = build_runtime(served.project)
    rt.live_poll_s = 0  # no poll at all: only the subscription can bring the values
    rt.start()
    try:
        stages = served.tags[served.tags["tag_id"] == "lifecycle_stage"]
        lapsed = stages[stages["value"].astype(str).isin(["churned", "dormant"])]
        cid = str(lapsed["customer_id"].iloc[1])
        assert _tags(rt, cid)["lifecycle_stage"]["value"] in ("churned", "dormant")
        tagger = rt.event_ingest.tagger()  # type: ignore[union-attr]
        now = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=5)
        event = {
            "event_id": f"nats-{cid}",
            "customer_id": cid,
            "occurred_at": now.isoformat(),
            "event_type": "purchase",
            "amount": 50.0,
        }
        result = tagger.apply([event], source="nats:events.shop")
        assert result.accepted == 1
        assert _tags(rt, cid)["lifecycle_stage"]["value"] == "active"
    finally:
        rt.stop()


def test_the_poll_opens_no_reader_while_this_process_is_mid_micro_batch(
    served: ServedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the held connection's close and the write that reopens it, a poll that
    opened a reader held that write up: it reads through the held connection instead,
    or skips its turn (for at most HOLD_MAX_S)."""
    import tags.store as store_module
    import tagsmith.live as live_module

    store = served.project.tag_store()
    store.release()
    opened: list[bool] = []
    real_open = store_module.open_store

    def counted(*args: object, **kwargs: object) -> object:
        opened.append(bool(kwargs.get("write")))
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "open_store", counted)
    ingest = ServiceIngest(served.project)
    try:
        with store.keep_open():  # a micro-batch of this process between its writes
            assert not len(ingest.live_rows(1))
            assert opened == [], "the poll opened the store"
            with store.held_writer() as con:  # the micro-batch's write opens it
                con.execute("SELECT 1")
            assert opened == [True]
            ingest.live_rows(2)  # read through the held connection
            assert opened == [True]
            store.release()
            monkeypatch.setattr(live_module, "HOLD_MAX_S", 0.0)
            ingest.live_rows(3)  # skipped for too long: reads as without a micro-batch
            assert opened == [True, False]
        # A full reload (cursor 0) is never skipped.
        ingest.live_rows(0)
        assert opened == [True, False, False]
    finally:
        store.release()
