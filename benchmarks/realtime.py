"""Benchmark of real-time tags: events/s sustained, and event -> changed tag in ``/tags``.

A population of ``--customers`` customers (synthetic, a year of events) is imported into
a fact store and tagged by one batch run (``scoring.run_tagging``, no champion models:
rule tags, the thresholds recorded). Then, in the same process:

1. **Sustained ingest, in-process** (the work ``POST /events`` and the consumer share):
   ``LiveTagger.apply`` on micro-batches of ``--batch`` new events for random customers,
   for ``--seconds``; events/s and per-batch p50/p99.
2. **Event -> changed tag visible, HTTP path**: the service runtime (``tagsmith.app``'s
   ``build_runtime`` with real stores) ingests one purchase of a lapsed customer and
   ``/tags`` (``runtime.tags``) is read until the lifecycle tag changed; p50/p99 over
   ``--probes`` customers; then sustained ingest by 8 and 16 concurrent clients
   posting 50 and 100 events per request (requests queued together are applied as one
   micro-batch): events/s and request p50/p99. (No HTTP framing: the BentoML layer
   adds ~3 ms, measured in ``benchmarks/serving.py``.)
3. **Event -> changed tag visible, NATS path**: a real nats-server (127.0.0.1, random
   port, temp dir) and the real consumer (``streaming.consumer.consume``) in a thread;
   a purchase is published and the clock stops when the service runtime's ``/tags``
   shows the change (the runtime polls live values every ``streaming.live_poll_s``).
   Also sustained events/s through NATS at offered rates of ``--rates`` events/s, with
   the p99 event -> stored-and-tagged latency at each: the knee is the first rate whose
   p99 passes 1 s or whose achieved rate falls behind.

Reference in the same process: the batch run's cost per customer (``tags run`` over the
whole population) against the live re-tag's cost per event.

Usage::

    PYTHONPATH=. python benchmarks/realtime.py [--customers 20000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _project(root: Path, customers: int) -> Any:
    from click.testing import CliRunner

    from synthetic import generate
    from tagsmith.cli import main as cli
    from tagsmith.project import Project

    done = CliRunner().invoke(cli, ["--project", str(root), "init"])
    assert done.exit_code == 0, done.output
    project = Project.load(root)
    data = generate(customers, start="2025-01-01", end="2025-12-31", seed=3)
    store = project.fact_store()
    with store.lock():
        store.write(
            customers=data.customers,
            events=data.events,
            log_entries=[],
            now=pd.Timestamp.now(tz="UTC"),
        )
    return project


def _purchase(cid: str, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": cid,
        "occurred_at": (pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)).isoformat(),
        "event_type": "purchase",
        "amount": 42.0,
    }


def _sustained(tagger: Any, ids: np.ndarray, batch: int, seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    n = 0
    per_batch: list[float] = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        chosen = rng.choice(ids, size=batch)
        records = [
            {
                "event_id": f"s{i}-{j}",
                "customer_id": str(c),
                "occurred_at": pd.Timestamp.now(tz="UTC").isoformat(),
                "event_type": "login",
            }
            for j, c in enumerate(chosen)
        ]
        t = time.perf_counter()
        result = tagger.apply(records, source="bench")
        per_batch.append(time.perf_counter() - t)
        n += result.accepted
        i += 1
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "events": n,
        "events_per_s": round(n / elapsed, 1),
        "batch_p50_ms": round(1000 * _pct(per_batch, 50), 1),
        "batch_p99_ms": round(1000 * _pct(per_batch, 99), 1),
    }


def _http_concurrent(
    runtime: Any, ids: np.ndarray, clients: int, batch: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads posting ``batch`` new events each, back to back, through the
    service runtime's ``POST /events`` (batches queued together are one micro-batch)."""
    from serving.access import Caller

    ingest = Caller("bench", "ingest")
    lat: list[float] = []
    counts = [0] * clients
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        i = 0
        while time.perf_counter() < stop_at:
            chosen = rng.choice(ids, size=batch)
            now = pd.Timestamp.now(tz="UTC").isoformat()
            records = [
                {
                    "event_id": f"c{clients}-{k}-{i}-{j}",
                    "customer_id": str(c),
                    "occurred_at": now,
                    "event_type": "browse",
                }
                for j, c in enumerate(chosen)
            ]
            t = time.perf_counter()
            answer = runtime.ingest_events(ingest, records)
            lat.append(time.perf_counter() - t)
            counts[k] += int(answer["accepted"])
            i += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "batch": batch,
        "events": sum(counts),
        "events_per_s": round(sum(counts) / elapsed, 1),
        "request_p50_ms": round(1000 * _pct(lat, 50), 1),
        "request_p99_ms": round(1000 * _pct(lat, 99), 1),
    }


def _lapsed(project: Any, n: int) -> list[str]:
    snap = project.tag_store().snapshot(tags=["lifecycle_stage"])
    lapsed = snap[snap["value"].astype(str).isin(["churned", "dormant"])]
    return lapsed["customer_id"].astype(str).tolist()[:n]


def _stage(runtime: Any, caller: Any, cid: str) -> str | None:
    answer = runtime.tags(caller, [cid])
    for t in answer["results"][0].get("tags") or []:
        if t["tag_id"] == "lifecycle_stage":
            return str(t["value"])
    return None


def _http_probes(runtime: Any, customers: list[str]) -> dict[str, Any]:
    from serving.access import Caller

    ingest, reader = Caller("bench", "ingest"), Caller("bench", "executive")
    lat = []
    for i, cid in enumerate(customers):
        before = _stage(runtime, reader, cid)
        t = time.perf_counter()
        runtime.ingest_events(ingest, [_purchase(cid, f"h{i}")])
        while _stage(runtime, reader, cid) == before:
            time.sleep(0.001)
        lat.append(time.perf_counter() - t)
    return {
        "probes": len(lat),
        "p50_ms": round(1000 * _pct(lat, 50), 1),
        "p99_ms": round(1000 * _pct(lat, 99), 1),
    }


def _nats_server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    binary = Path(sys.executable).parent / "nats-server"
    proc = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"nats://127.0.0.1:{port}"


def _nats_probes(loop: Any, js: Any, runtime: Any, probes: list[str]) -> dict[str, Any]:
    """Publish one purchase per probe; time until the runtime's /tags shows the change."""
    from serving.access import Caller

    reader = Caller("bench", "executive")
    lat = []
    for i, cid in enumerate(probes):
        before = _stage(runtime, reader, cid)
        t = time.perf_counter()
        loop.run_until_complete(
            js.publish("events.shop", json.dumps(_purchase(cid, f"n{i}")).encode())
        )
        while _stage(runtime, reader, cid) == before and time.perf_counter() - t < 10:
            time.sleep(0.002)
        lat.append(time.perf_counter() - t)
    return {
        "probes": len(lat),
        "p50_ms": round(1000 * _pct(lat, 50), 1),
        "p99_ms": round(1000 * _pct(lat, 99), 1),
        "live_poll_s": runtime.live_poll_s,
    }


def _nats_sustained(
    loop: Any, js: Any, ids: np.ndarray, rates: list[int], done_at: dict[str, float]
) -> list[dict[str, Any]]:
    """Offer each rate for 5 s; stop at the first whose p99 passes 1 s or falls behind.

    ``done_at`` is filled by the consumer's batch callback (customer -> time tagged).
    """
    rng = np.random.default_rng(5)
    steps = []
    for rate in rates:
        seconds = 5.0
        n = int(rate * seconds)
        sent_at: dict[str, float] = {}
        done_at.clear()
        chosen = [str(c) for c in rng.choice(ids, size=n)]
        start = time.perf_counter()

        async def pump(
            chosen: list[str] = chosen,
            start: float = start,
            rate: int = rate,
            sent_at: dict[str, float] = sent_at,
        ) -> None:
            pending = []
            for k, cid in enumerate(chosen):
                due = start + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = {
                    "event_id": f"r{rate}-{k}",
                    "customer_id": cid,
                    "occurred_at": pd.Timestamp.now(tz="UTC").isoformat(),
                    "event_type": "browse",
                }
                sent_at.setdefault(cid, time.perf_counter())
                pending.append(js.publish("events.shop", json.dumps(body).encode()))
                if len(pending) >= 200:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)

        loop.run_until_complete(pump())
        deadline = time.perf_counter() + 30
        while len(done_at) < len(sent_at) and time.perf_counter() < deadline:
            time.sleep(0.05)
        elapsed = max(done_at.values(), default=start) - start
        lat = [done_at[c] - sent_at[c] for c in sent_at if c in done_at]
        steps.append(
            {
                "offered_per_s": rate,
                "achieved_per_s": round(n / elapsed, 1) if elapsed > 0 else None,
                "p50_ms": round(1000 * _pct(lat, 50), 1),
                "p99_ms": round(1000 * _pct(lat, 99), 1),
                "not_done": len(sent_at) - len(lat),
            }
        )
        if _pct(lat, 99) > 1.0 or len(lat) < len(sent_at):
            break
    return steps


def _nats_part(
    project: Any, runtime: Any, tagger: Any, ids: np.ndarray, probes: list[str], rates: list[int]
) -> dict[str, Any]:
    import nats

    from streaming.consumer import ConsumerReport, consume, ensure_stream

    cfg = project.config.streaming.model_copy(update={"batch_size": 1000, "batch_wait_s": 0.5})
    tmp = Path(tempfile.mkdtemp(prefix="rt-nats-"))
    proc, url = _nats_server(tmp / "js")
    stop_flag = threading.Event()
    done_at: dict[str, float] = {}
    report = ConsumerReport()

    def on_batch(result: Any, _total: Any) -> None:
        now = time.perf_counter()
        for cid in pd.unique(result.rows["customer_id"].astype(str)) if len(result.rows) else []:
            done_at.setdefault(str(cid), now)

    def run_consumer() -> None:
        async def main() -> None:
            stop = asyncio.Event()

            async def watch() -> None:
                while not stop_flag.is_set():
                    await asyncio.sleep(0.05)
                stop.set()

            watcher = asyncio.ensure_future(watch())
            await consume(
                tagger,
                cfg,
                url=url,
                subject=cfg.subject,
                stop=stop,
                report=report,
                on_batch=on_batch,
            )
            await watcher

        asyncio.run(main())

    out: dict[str, Any] = {}
    thread = threading.Thread(target=run_consumer, daemon=True)
    try:

        async def setup() -> Any:
            nc = await nats.connect(url)
            await ensure_stream(nc.jetstream(), cfg, cfg.subject)
            return nc

        loop = asyncio.new_event_loop()
        nc = loop.run_until_complete(setup())
        js = nc.jetstream()
        thread.start()
        time.sleep(1.0)
        out["visible_in_tags"] = _nats_probes(loop, js, runtime, probes)
        steps = _nats_sustained(loop, js, ids, rates, done_at)
        out["sustained"] = steps
        knee = next((s["offered_per_s"] for s in steps if s["p99_ms"] > 1000), None)
        out["knee_offered_per_s"] = knee
        loop.run_until_complete(nc.close())
    finally:
        stop_flag.set()
        thread.join(timeout=30)
        proc.terminate()
        proc.wait(timeout=10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument(
        "--root",
        type=Path,
        help="use (or build) the project of benchmarks/big_project.py there: champions "
        "included, so live re-tags predict too (the project gains the live events)",
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 50, 1000, 5000])
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 200, 500, 1000, 2000, 5000])
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

    from scoring.batch import run_tagging
    from tagsmith.app import build_runtime
    from tagsmith.live import live_tagger

    t = time.perf_counter()
    predictors: list[Any] = []
    if args.root:
        from benchmarks.big_project import ensure_project
        from tagsmith.champions import champion_predictors

        project = ensure_project(args.root, args.customers)
        predictors = list(champion_predictors(project)[0])
    else:
        project = _project(Path(tempfile.mkdtemp(prefix="rt-bench-")) / "p", args.customers)
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    run = run_tagging(
        facts=project.facts(),
        catalogue=project.catalogue(),
        store=project.tag_store(),
        predictors=predictors,
    )
    batch_s = time.perf_counter() - t
    n_events = project.fact_store().manifest()["events"]
    tagger, _ = live_tagger(project)
    t = time.perf_counter()
    tagger.warm()
    warm_s = time.perf_counter() - t
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    sustained = [_sustained(tagger, ids, b, args.seconds) for b in args.batch]

    runtime = build_runtime(project)
    runtime.event_ingest._tagger = tagger  # share the warmed tagger (one process)
    runtime.start()
    lapsed = _lapsed(project, 2 * args.probes)
    http = _http_probes(runtime, lapsed[: args.probes])
    http_concurrent = [
        _http_concurrent(runtime, ids, c, b, args.seconds) for c, b in ((8, 50), (16, 100))
    ]
    nats_part = _nats_part(project, runtime, tagger, ids, lapsed[args.probes :], args.rates)
    runtime.stop()

    best = max(sustained, key=lambda s: s["events_per_s"])
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "population": {
            "customers": args.customers,
            "events": n_events,
            "champions": [str(getattr(p, "version", p)) for p in predictors],
            "setup_s": round(setup_s, 1),
            "tagger_warm_s": round(warm_s, 2),
        },
        "reference_batch_run": {
            "seconds": round(batch_s, 2),
            "customers": run.run.n_customers,
            "ms_per_customer": round(1000 * batch_s / max(run.run.n_customers, 1), 3),
        },
        "in_process_ingest": sustained,
        "live_ms_per_event_vs_batch_ms_per_customer": round(
            (1000 / best["events_per_s"]) / (1000 * batch_s / max(run.run.n_customers, 1)), 1
        ),
        "http_path_event_to_tags": http,
        "http_concurrent_ingest": http_concurrent,
        "nats": nats_part,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
