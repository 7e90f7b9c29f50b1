"""kill -9 of the consumer at any point: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import numpy as np
import pandas as pd
import pytest

from streaming.config import StreamingConfig
from streaming.consumer import publish_events
from tags.live import live_rows
from tests.serving.live import REPO
from tests.streaming.conftest import Setup
from tests.streaming.consumer_proc import tagger_at
from tests.streaming.natsserver import nats_server

pytestmark = pytest.mark.slow

KILLS = 10


def _events(setup: Setup, n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    ids = setup.store.load_customers()["customer_id"].astype(str).to_numpy()
    start = pd.Timestamp("2024-10-01", tz="UTC")
    out = []
    for i in range(n):
        kind = str(rng.choice(["purchase", "login", "browse"]))
        event: dict[str, object] = {
            "event_id": f"k{seed}-{i}",
            "customer_id": str(rng.choice(ids)),
            "occurred_at": (start + pd.Timedelta(seconds=int(rng.integers(0, 86_000)))).isoformat(),
            "event_type": kind,
        }
        if kind == "purchase":
            event["amount"] = float(rng.integers(5, 300))
        out.append(event)
    return out


def _start(root: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.streaming.consumer_proc", str(root), url],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stored(setup: Setup) -> pd.Series:
    table = setup.live.table()
    return pd.Series([] if table is None else table.column("event_id").to_pylist(), dtype=str)


async def _unfinished(cfg: StreamingConfig, url: str) -> int:
    """Messages the durable consumer has not acknowledged (pending or awaiting an ack)."""
    nc = await nats.connect(url, connect_timeout=5)
    try:
        info = await nc.jetstream().consumer_info(cfg.stream, cfg.durable)
    finally:
        await nc.close()
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


def test_kill_9_loses_nothing_and_applies_nothing_twice(setup: Setup, tmp_path: Path) -> None:
    cfg = StreamingConfig()
    rng = random.Random(11)
    sent: list[dict[str, object]] = []
    log = tmp_path / "consumer.log"
    with nats_server(tmp_path / "nats") as url:
        kills = 0
        for round_no in range(KILLS):
            batch = _events(setup, 40, seed=round_no)
            # Every third round sends some events again (a producer retrying).
            if round_no % 3 == 2:
                batch += sent[-10:]
            sent += batch
            bodies = [json.dumps(e).encode() for e in batch]
            asyncio.run(publish_events(cfg, url, "events.shop", bodies))
            proc = _start(setup.root, url, log)
            before = len(_stored(setup))
            deadline = time.monotonic() + 60
            # Kill once it is working (some events of this round stored), at a random moment.
            while len(_stored(setup)) == before and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
        # A last consumer drains the stream (unacknowledged messages are redelivered).
        proc = _start(setup.root, url, log)
        wanted = {str(e["event_id"]) for e in sent}
        deadline = time.monotonic() + 120
        try:
            while set(_stored(setup)) != wanted:
                assert time.monotonic() < deadline, f"lost: {len(wanted - set(_stored(setup)))}"
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.1)
            # Stop it only once it has applied and acknowledged every message, redeliveries
            # included: a fixed pause here stopped a consumer still starting on a loaded
            # machine.
            while asyncio.run(_unfinished(cfg, url)):
                assert time.monotonic() < deadline, asyncio.run(_unfinished(cfg, url))
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert kills >= KILLS
    stored = _stored(setup)
    assert set(stored) == wanted  # 0 lost
    assert not stored.duplicated().any()  # 0 applied twice
    # The live values are exactly what the stored events imply: re-tagging every touched
    # customer from scratch changes nothing.
    with setup.tags.reader() as con:
        touched = sorted(set(live_rows(con)["customer_id"].astype(str)))
    fresh = tagger_at(setup.root)
    fresh.warm()
    write, _ = fresh.retag(
        touched,
        as_of=pd.Timestamp("2024-10-02 00:00:01", tz="UTC"),
        at=pd.Timestamp("2024-10-02", tz="UTC"),
    )
    assert write.group.n == 0
