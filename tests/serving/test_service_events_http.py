"""POST /events through the whole HTTP stack (fake runtime): permission, 429, 400."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pandas as pd
import pytest
from starlette.testclient import TestClient

from serving.errors import TooManyRequests
from serving.keys import ApiKeyStore
from serving.runtime import ServingRuntime
from tests.serving import fakes


class FakeIngest:
    """Accepts everything, or answers busy; with a ``barrier``, each batch waits there
    (until as many batches are being ingested at once as the barrier has parties)."""

    max_waiting = 7

    def __init__(self) -> None:
        self.busy = False
        self.barrier: threading.Barrier | None = None

    def ingest(
        self, records: list[Any], *, source: str
    ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
        if self.busy:
            raise TooManyRequests("busy", retry_after_s=2.0)
        if self.barrier is not None:
            self.barrier.wait()
        now = pd.Timestamp("2025-01-01", tz="UTC")
        rows = pd.DataFrame(
            {
                "customer_id": ["c0001"],
                "tag_id": ["old_customer"],
                "value": ["true"],
                "score": [float("nan")],
                "source": ["rule"],
                "version": ["old_customer@9"],
                "as_of": [now],
                "updated_at": [now],
                "seq": [1],
            }
        )
        answer = {"received": len(records), "accepted": len(records), "duplicates": 0}
        return answer | {"quarantined": 0}, rows, ["c0001"]

    def live_rows(self, after_seq: int) -> pd.DataFrame:
        return pd.DataFrame()


INGEST = FakeIngest()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tag_service_app: Any) -> Iterator[Any]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    store = ApiKeyStore(path)
    keys = {"admin": store.add("ops", "admin"), "service": store.add("web", "service")}
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGSMITH_FAKE_KEYS", str(path))
    mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))

    def factory() -> ServingRuntime:
        runtime = fakes.build_fake_runtime()
        runtime.event_ingest = INGEST
        runtime.allows = lambda role, action: role == "admin" and action == "write_events"
        return runtime

    mp.setitem(fakes.ACTIVE, "factory", factory)
    with TestClient(tag_service_app) as c:
        yield c, keys
    mp.undo()


def test_events_need_the_write_events_permission(client: Any) -> None:
    c, keys = client
    event = {"customer_id": "c0001", "occurred_at": "2025-01-01T00:00:00Z", "event_type": "login"}
    denied = c.post("/events", json={"events": [event]}, headers={"X-API-Key": keys["service"]})
    assert denied.status_code == 403
    assert "write_events" in denied.json()["error"]
    ok = c.post("/events", json={"events": [event]}, headers={"X-API-Key": keys["admin"]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 1
    tags = c.post("/tags", json={"customer_ids": ["c0001"]}, headers={"X-API-Key": keys["admin"]})
    live = [t for t in tags.json()["results"][0]["tags"] if t["tag_id"] == "old_customer"]
    assert live == [
        {
            "display_name": "old_customer",  # no catalogue name: the service shows the id
            "tag_id": "old_customer",
            "value": "true",
            "score": None,
            "source": "rule",
            "version": "old_customer@9",
            "as_of": "2025-01-01T00:00:00+00:00",
            "updated_at": "2025-01-01T00:00:00+00:00",
        }
    ]


def test_back_pressure_answers_429_with_retry_after(client: Any) -> None:
    c, keys = client
    INGEST.busy = True
    try:
        r = c.post("/events", json={"events": []}, headers={"X-API-Key": keys["admin"]})
    finally:
        INGEST.busy = False
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"


def test_a_body_that_is_not_a_list_is_refused(client: Any) -> None:
    c, keys = client
    r = c.post("/events", json={"events": {"a": 1}}, headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 400


def test_concurrent_batches_are_ingested_at_once(client: Any) -> None:
    # The live tagger applies the batches waiting together in one micro-batch: that only
    # happens when the service lets several requests wait in the ingest at once. As a
    # sync BentoML route /events ran one request at a time (BentoML's default of one
    # worker thread): here the four batches would never meet at the barrier.
    c, keys = client
    event = {"customer_id": "c0001", "occurred_at": "2025-01-01T00:00:00Z", "event_type": "login"}
    INGEST.barrier = threading.Barrier(4, timeout=10)
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: c.post(
                        "/events", json={"events": [event]}, headers={"X-API-Key": keys["admin"]}
                    ),
                    range(4),
                )
            )
    finally:
        INGEST.barrier = None
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]


def test_events_threads_follow_the_ingest_s_waiting_batches(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own keys file: the module fixture's environment is set only while that
    # fixture is alive, and xdist may run this test on a worker that never built it.
    monkeypatch.setenv("TAGSMITH_FAKE_KEYS", str(tmp_path / "keys.json"))
    runtime = fakes.build_fake_runtime()
    runtime.event_ingest = INGEST
    # One thread per batch allowed to wait, and one more: the request beyond those
    # reaches the ingest, which answers 429, instead of queueing for a thread.
    assert runtime.event_threads == FakeIngest.max_waiting + 1

    # An ingest that names no limit: the streaming config's default of 64.
    runtime.event_ingest = cast(Any, object())
    assert runtime.event_threads == 65


def test_the_answer_is_encoded_without_bentoml_s_output_schema(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BentoML's output path for a dict builds a pydantic TypeAdapter and JSON schema per
    # call (IORootModel.mime_type); /events encodes its answer itself, as /score does.
    from _bentoml_sdk.io_models import IOMixin

    def refuse(cls: Any) -> str:
        raise AssertionError("the answer went through BentoML's output schema")

    monkeypatch.setattr(IOMixin, "mime_type", classmethod(refuse))
    c, keys = client
    event = {"customer_id": "c0001", "occurred_at": "2025-01-01T00:00:00Z", "event_type": "login"}
    r = c.post("/events", json={"events": [event]}, headers={"X-API-Key": keys["admin"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"received": 1, "accepted": 1, "duplicates": 0, "quarantined": 0}
