"""Benchmark of trigger delivery: deliveries per second, and tag run end -> last delivery.

A receiver runs in its own process (aiohttp on 127.0.0.1, a random port) and does what a
real one does per request: reads the body, verifies the HMAC signature, parses the JSON
and counts the events and distinct idempotency keys.

1. **Deliveries per second.** ``--events`` events (default 100,000) are queued in a fresh
   outbox and the dispatcher delivers them (batches of ``--batch-size``, signed, every
   batch audited, SQLite ``synchronous=FULL``) until none is left. Reference, in the same
   process: the same bodies POSTed back to back by one httpx client with signing only
   (no outbox, no audit), the ceiling of this sender and receiver. A second, smaller run
   sends one event per request.
2. **Tag run end -> last delivery.** A tag store holds a snapshot of ``--customers``
   customers with three tags; a trigger on entering ``lifecycle_stage = 'dormant'`` is
   applied; then a second snapshot, in which ``--transitions`` customers turn dormant,
   is written the way ``tagsmith tags run`` ends (``TagStore.write_snapshot``, which
   records the transitions in the same transaction). The clock starts when that write
   returns and stops when the receiver has the last event: the dispatcher reads the
   transitions since its cursor, judges them, queues the events and delivers them (as
   ``tags run``'s own delivery pass or ``tagsmith triggers run`` do). The store step is
   also timed with transition recording switched off (reference).

Usage::

    PYTHONPATH=. python benchmarks/activation.py [--events 100000] [--transitions 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

SECRET = "benchmark-secret"
SECRET_ENV = "TAGSMITH_BENCH_SECRET"
TARGET_PER_S = 2000.0


# ---------------------------------------------------------------------------- receiver
def serve() -> None:
    """The receiver process: prints its port, serves until killed."""
    import asyncio

    from aiohttp import web

    from activation.signing import verify_signature

    stats: dict[str, Any] = {"requests": 0, "events": 0, "bad": 0, "last_at": 0.0}
    keys: set[str] = set()
    secret = SECRET.encode()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(secret, request.headers, body):
            stats["bad"] += 1
            return web.Response(status=401)
        events = json.loads(body)["events"]
        stats["requests"] += 1
        stats["events"] += len(events)
        keys.update(e["id"] for e in events)
        stats["last_at"] = time.time()
        return web.Response(text='{"ok":true}', content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response({**stats, "distinct": len(keys)})

    async def reset(request: web.Request) -> web.Response:
        stats.update(requests=0, events=0, bad=0, last_at=0.0)
        keys.clear()
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [web.post("/hook", hook), web.get("/stats", get_stats), web.post("/reset", reset)]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class ReceiverProcess:
    def __init__(self) -> None:
        paths = [str(_HERE.parent), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        if self.proc.stdout is None:
            raise SystemExit("the receiver process has no stdout")
        self.port = int(self.proc.stdout.readline())
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stats(self) -> dict[str, Any]:
        return dict(self.client.get("/stats").json())

    def reset(self) -> None:
        self.client.post("/reset")

    def stop(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, 15)
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------- helpers
def _activation(root: Path, url: str, *, batch_size: int, triggers: list[dict[str, Any]]):
    import yaml

    from activation.config import ActivationConfig
    from activation.definitions import check_definitions, load_definitions
    from activation.dispatcher import Activation
    from activation.outbox import Outbox
    from activation.versions import TriggerHistory
    from tags.audit import AuditLog
    from tags.catalogue import LIBRARY_DIR, Catalogue
    from tags.policy import AccessPolicy
    from tags.store import TagStore
    from tags.transitions import TransitionLog

    (root / "triggers").mkdir(parents=True, exist_ok=True)
    dest = {
        "name": "crm",
        "type": "webhook",
        "url": url,
        "secret_env": SECRET_ENV,
        "owner": "bench",
        "purpose": "marketing",
        "batch_size": batch_size,
        "concurrency": 2,
    }
    (root / "triggers" / "defs.yaml").write_text(
        yaml.safe_dump({"destinations": [dest], "triggers": triggers}), encoding="utf-8"
    )
    catalogue = Catalogue.load(LIBRARY_DIR)
    policy = AccessPolicy.default()
    store = TagStore(root / "tags.duckdb")
    activation = Activation(
        store=store,
        outbox=Outbox(root / "activation.sqlite"),
        history=TriggerHistory(root / "trigger_versions"),
        catalogue=catalogue,
        policy=policy,
        audit=AuditLog(root / "audit.log"),
        root=root,
        lock_path=root / "activation.lock",
        config=ActivationConfig(poll_interval_s=0.05),
    )
    return activation, lambda: activation.history.apply(
        load_definitions(root / "triggers"),
        check_definitions(
            load_definitions(root / "triggers"), catalogue=catalogue, policy=policy, audiences={}
        ),
        position=TransitionLog(store).last_seq(),
        applied_at=datetime.now(UTC),
        applied_by="bench",
    )


def _payload(i: int) -> tuple[str, str, bytes]:
    from activation.payloads import canonical, item_key

    customer = f"C{i:08d}"
    key = item_key("bench", customer)
    body = {
        "id": key,
        "type": "trigger",
        "trigger": "winback",
        "trigger_version": 1,
        "purpose": "marketing",
        "customer_id": customer,
        "change": "entered",
        "as_of": "2025-01-01T00:00:00Z",
        "tags": {"rfm_segment": "important_value", "churn_risk": "high", "value_tier": "high"},
    }
    return key, customer, canonical(body)


def _wait_for(receiver: ReceiverProcess, n: int, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = receiver.stats()
        if stats["distinct"] >= n or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


# ---------------------------------------------------------------------------- phase 1
def deliveries_per_second(receiver: ReceiverProcess, n: int, batch_size: int) -> dict[str, Any]:
    from activation.dispatcher import Dispatcher
    from activation.outbox import Item

    receiver.reset()
    with tempfile.TemporaryDirectory(prefix="bench-activation-") as tmp:
        activation, apply = _activation(Path(tmp), receiver.url, batch_size=batch_size, triggers=[])
        apply()
        items = [
            Item(key, "trigger", "winback", 1, "crm", customer, body)
            for key, customer, body in (_payload(i) for i in range(n))
        ]
        began = time.perf_counter()
        activation.outbox.enqueue(items)
        queued_s = time.perf_counter() - began
        began = time.perf_counter()
        report = Dispatcher(activation, environ={SECRET_ENV: SECRET}).run(
            until="drained", max_seconds=600
        )
        deliver_s = time.perf_counter() - began
        stats = _wait_for(receiver, n)
        activation.outbox.close()
    if stats["distinct"] != n or stats["bad"]:
        raise SystemExit(f"the receiver did not get every event once, signed: {stats}")
    return {
        "events": n,
        "batch_size": batch_size,
        "requests": stats["requests"],
        "queue_s": queued_s,
        "deliver_s": deliver_s,
        "per_s": n / deliver_s,
        "batches": report.batches,
    }


def raw_reference(receiver: ReceiverProcess, n: int, batch_size: int) -> dict[str, Any]:
    """The same bodies POSTed back to back: signing and HTTP only (no outbox, no audit)."""
    import httpx

    from activation.payloads import batch_body, batch_key
    from activation.signing import signature_headers

    receiver.reset()
    payloads = [_payload(i) for i in range(n)]
    bodies = []
    for start in range(0, n, batch_size):
        chunk = payloads[start : start + batch_size]
        key = batch_key("crm", [k for k, _, _ in chunk])
        bodies.append((key, batch_body("crm", key, [b for _, _, b in chunk])))
    secret = SECRET.encode()
    began = time.perf_counter()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for key, body in bodies:
            headers = {"Content-Type": "application/json", "Idempotency-Key": key}
            headers.update(signature_headers(secret, body))
            client.post(receiver.url, content=body, headers=headers).raise_for_status()
    seconds = time.perf_counter() - began
    stats = _wait_for(receiver, n)
    if stats["distinct"] != n:
        raise SystemExit(f"the reference run lost events: {stats}")
    return {"events": n, "batch_size": batch_size, "seconds": seconds, "per_s": n / seconds}


# ---------------------------------------------------------------------------- phase 2
def _snapshot(n_customers: int, dormant: int):
    import numpy as np
    import pandas as pd

    ids = np.array([f"C{i:08d}" for i in range(n_customers)], dtype=object)
    stage = np.where(np.arange(n_customers) < dormant, "dormant", "active")
    frames = [
        pd.DataFrame({"customer_id": ids, "tag_id": "lifecycle_stage", "value": stage}),
        pd.DataFrame({"customer_id": ids, "tag_id": "rfm_segment", "value": "important_value"}),
        pd.DataFrame({"customer_id": ids[::2], "tag_id": "old_customer", "value": "true"}),
    ]
    df = pd.concat(frames, ignore_index=True)
    df["score"] = np.nan
    df["source"] = "rule"
    df["version"] = df["tag_id"] + "@1"
    return df


def run_end_to_last_delivery(
    receiver: ReceiverProcess, n_customers: int, n_transitions: int
) -> dict[str, Any]:
    import tags.store as store_module
    from activation.dispatcher import Dispatcher
    from tags.transitions import TransitionLog

    receiver.reset()
    trigger = {
        "name": "dormant",
        "owner": "bench",
        "role": "marketing",
        "purpose": "marketing",
        "status": "active",
        "destination": "crm",
        "on_enter": "lifecycle_stage = 'dormant'",
        "include": ["rfm_segment", "old_customer"],
    }
    out: dict[str, Any] = {"customers": n_customers, "transitions": n_transitions}
    with tempfile.TemporaryDirectory(prefix="bench-activation-") as tmp:
        activation, apply = _activation(Path(tmp), receiver.url, batch_size=100, triggers=[trigger])
        store = activation.store
        store.write_snapshot(_snapshot(n_customers, 0), as_of="2024-12-01")
        apply()
        # Reference: the same store step without recording transitions, on a copy.
        ref_path = Path(tmp) / "reference.duckdb"
        ref_store = store_module.TagStore(ref_path)
        ref_store.write_snapshot(_snapshot(n_customers, 0), as_of="2024-12-01")
        original = store_module.record_batch_transitions
        store_module.record_batch_transitions = lambda *a, **k: None  # type: ignore[assignment]
        try:
            began = time.perf_counter()
            ref_store.write_snapshot(_snapshot(n_customers, n_transitions), as_of="2025-01-01")
            out["store_step_reference_s"] = time.perf_counter() - began
        finally:
            store_module.record_batch_transitions = original
        began = time.perf_counter()
        store.write_snapshot(_snapshot(n_customers, n_transitions), as_of="2025-01-01")
        out["store_step_s"] = time.perf_counter() - began
        run_end = time.time()
        recorded = TransitionLog(store).last_seq()
        if recorded != n_transitions:
            raise SystemExit(f"expected {n_transitions:,} transitions recorded, got {recorded:,}")
        dispatcher = Dispatcher(activation, environ={SECRET_ENV: SECRET})
        ingest_began = time.perf_counter()
        with dispatcher.locked():
            ingest = dispatcher.ingest()
        out["ingest_s"] = time.perf_counter() - ingest_began
        report = dispatcher.run(until="drained", max_seconds=600)
        stats = _wait_for(receiver, n_transitions)
        out["end_to_last_delivery_s"] = stats["last_at"] - run_end
        out["deliver_s"] = report.seconds
        out["fired"] = ingest.fired.get("dormant", 0)
        activation.outbox.close()
    if stats["distinct"] != n_transitions or out["fired"] != n_transitions:
        raise SystemExit(f"expected {n_transitions:,} events delivered, got {stats} / {out}")
    return out


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--single-events", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    receiver = ReceiverProcess()
    try:
        raw = raw_reference(receiver, args.events, args.batch_size)
        print(
            f"reference (httpx loop, signing only): {raw['events']:,} events in batches of "
            f"{raw['batch_size']} in {raw['seconds']:.2f} s = {raw['per_s']:,.0f} events/s"
        )
        full = deliveries_per_second(receiver, args.events, args.batch_size)
        verdict = "meets" if full["per_s"] >= TARGET_PER_S else "MISSES"
        print(
            f"dispatcher: {full['events']:,} events, {full['requests']:,} requests of "
            f"{full['batch_size']}: {full['deliver_s']:.2f} s = {full['per_s']:,.0f} events/s "
            f"({verdict} the {TARGET_PER_S:,.0f}/s target; {full['per_s'] / raw['per_s']:.2f}x "
            f"the reference); queueing them took {full['queue_s']:.2f} s"
        )
        one = deliveries_per_second(receiver, args.single_events, 1)
        raw_one = raw_reference(receiver, args.single_events, 1)
        print(
            f"one event per request: dispatcher {one['per_s']:,.0f} events/s, reference "
            f"{raw_one['per_s']:,.0f}/s ({one['per_s'] / raw_one['per_s']:.2f}x)"
        )
        e2e = run_end_to_last_delivery(receiver, args.customers, args.transitions)
        print(
            f"tag run end -> last delivery: {e2e['transitions']:,} transitions over "
            f"{e2e['customers']:,} customers: {e2e['end_to_last_delivery_s']:.2f} s "
            f"(judging the transitions and queueing {e2e['fired']:,} events "
            f"{e2e['ingest_s']:.2f} s, delivering {e2e['deliver_s']:.2f} s)"
        )
        print(
            f"store step of that run: {e2e['store_step_s']:.2f} s recording the transitions, "
            f"{e2e['store_step_reference_s']:.2f} s without "
            f"({e2e['store_step_s'] / e2e['store_step_reference_s']:.2f}x)"
        )
    finally:
        receiver.stop()


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
