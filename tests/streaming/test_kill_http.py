"""kill -9 of ``tagsmith serve`` while ``POST /events`` batches arrive: after restarts and
the client's retries, nothing is lost and nothing is applied twice.

The client is an ordinary at-least-once producer: a batch counts as delivered only when
the service answered 200, and every other batch (connection dropped by the kill, 429)
is posted again after the restart. The service stores a batch durably before tagging
it, and a repeated ``event_id`` stores nothing but re-tags its customer, so a batch
killed between storing and tagging is completed by the retry.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.keys import ApiKeyStore
from tags.live import live_rows
from tagsmith.live import live_tagger
from tests.serving import project_fixture
from tests.serving.project_fixture import ServedProject
from tests.streaming.serve_proc import kill9, serve, stop, wait_events_ready

# Eleven service start-ups: allow for a loaded machine beyond the suite's 600 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

KILLS = 10
BATCH = 15

Batch = list[dict[str, object]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProject]:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        yield project_fixture.build(tmp_path_factory.mktemp("kill-http") / "p", n_customers=150)
    finally:
        mp.undo()


class Producer:
    """Posts batches one after another; remembers which ones the service confirmed."""

    def __init__(self, ids: list[str], seed: int) -> None:
        self.ids = ids
        self.rng = np.random.default_rng(seed)
        self.made = 0
        self.sent: list[dict[str, object]] = []
        self.unconfirmed: list[Batch] = []
        self.confirmed = 0
        self.cut = 0  # posts sent whose answer never came (the service died mid-batch)
        self.refusals: list[str] = []

    def new_batch(self) -> Batch:
        now = pd.Timestamp.now(tz="UTC")
        ago = self.rng.integers(5, 3600, size=BATCH)
        out: Batch = []
        for k in range(BATCH):
            kind = str(self.rng.choice(["purchase", "login", "browse"]))
            event: dict[str, object] = {
                "event_id": f"h{self.made}",
                "customer_id": str(self.rng.choice(self.ids)),
                "occurred_at": (now - pd.Timedelta(seconds=int(ago[k]))).isoformat(),
                "event_type": kind,
            }
            if kind == "purchase":
                event["amount"] = float(self.rng.integers(5, 300))
            self.made += 1
            out.append(event)
        # Some batches repeat earlier events (a producer that resends what it is unsure of).
        if self.sent and self.rng.random() < 0.3:
            out += [self.sent[int(i)] for i in self.rng.integers(0, len(self.sent), size=3)]
        self.sent += out[:BATCH]
        return out

    def post(self, url: str, key: str, batch: Batch) -> bool:
        """True when the service confirmed the batch; False keeps it for a retry."""
        try:
            r = httpx.post(
                f"{url}/events", json={"events": batch}, headers={"X-API-Key": key}, timeout=30
            )
        except httpx.HTTPError as exc:
            if not isinstance(exc, httpx.ConnectError):
                self.cut += 1
            self.unconfirmed.append(batch)
            return False
        if r.status_code == 200:
            self.confirmed += 1
            return True
        self.unconfirmed.append(batch)
        if r.status_code != 429:
            self.refusals.append(f"{r.status_code} {r.text[:300]}")
        return False

    def run(self, url: str, key: str, stop_at: threading.Event, limit: int = 400) -> None:
        """Retries first, then new batches, until a post fails or ``stop_at`` is set."""
        retry, self.unconfirmed = self.unconfirmed, []
        for n in range(limit):
            if stop_at.is_set():
                self.unconfirmed += retry
                return
            batch = retry.pop(0) if retry else self.new_batch()
            if not self.post(url, key, batch):
                self.unconfirmed += retry
                return
            if n and not retry and n % 50 == 0:
                time.sleep(0.01)
        self.unconfirmed += retry


def test_kill_9_of_the_service_loses_nothing_and_applies_nothing_twice(
    served: ServedProject, tmp_path: Path
) -> None:
    project = served.project
    keys = ApiKeyStore(project.api_keys_path)
    writer = keys.add("shop", "ingest")
    ids = sorted(set(served.tags["customer_id"].astype(str)))
    producer = Producer(ids, seed=3)
    rng = random.Random(17)
    kills = 0
    for _ in range(KILLS):
        # The process tagsmith serve runs, started directly (one start-up less per round).
        proc, url = serve(project.root, tmp_path, direct=True)
        try:
            wait_events_ready(url, writer)
            before = producer.confirmed
            halt = threading.Event()
            thread = threading.Thread(target=producer.run, args=(url, writer, halt))
            thread.start()
            deadline = time.monotonic() + 60
            # Kill once batches are flowing, at a random moment (mid-batch most of the time).
            while producer.confirmed == before and thread.is_alive():
                assert time.monotonic() < deadline, "no batch confirmed"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8))
            kill9(proc)
            kills += 1
            with pytest.raises(httpx.ConnectError):  # nothing left serving
                httpx.get(f"{url}/readyz", timeout=5)
            halt.set()
            thread.join(timeout=60)
            assert not thread.is_alive()
        finally:
            stop(proc)
    # The last start, by the CLI: the producer posts what it is unsure of until all is confirmed.
    proc, url = serve(project.root, tmp_path)
    try:
        wait_events_ready(url, writer)
        deadline = time.monotonic() + 120
        while producer.unconfirmed:
            assert time.monotonic() < deadline, f"{len(producer.unconfirmed)} batches unconfirmed"
            batch = producer.unconfirmed.pop(0)
            if not producer.post(url, writer, batch):
                time.sleep(0.2)
    finally:
        stop(proc)
    assert kills >= KILLS
    assert producer.cut >= KILLS // 2  # most kills hit a batch in flight
    assert producer.refusals == []
    table = project.live_events().table()
    stored = pd.Series([] if table is None else table.column("event_id").to_pylist(), dtype=str)
    wanted = {str(e["event_id"]) for e in producer.sent}
    assert len(wanted) > KILLS * BATCH
    assert set(stored) == wanted  # 0 lost
    assert not stored.duplicated().any()  # 0 applied twice
    # Every customer's live values are what its stored events imply at the instant they
    # were computed: re-tagging from scratch at that instant changes nothing.
    with project.tag_store().reader() as con:
        live = live_rows(con)
    assert set(live["customer_id"].astype(str)) >= {str(e["customer_id"]) for e in producer.sent}
    last = live.groupby(live["customer_id"].astype(str))["as_of"].max()
    tagger, _ = live_tagger(project)
    tagger.warm()
    for as_of, group in last.groupby(last):
        write, _ = tagger.retag(
            sorted(group.index), as_of=pd.Timestamp(as_of), at=pd.Timestamp.now(tz="UTC")
        )
        assert write.group.n == 0, f"{write.group.n} live values out of date as of {as_of}"
