"""Benchmark of real-time tags: events/s sustained, and event -> changed tag in ``/tags``.

A population of ``--customers`` customers is imported into a fact store (synthetic, a
year of events) and tagged by a batch run; ``--root`` uses (or builds) the project of
``benchmarks/big_project.py`` instead, whose champion models make every live re-tag
predict too. Then, in this process (but for the real server of step 3):

1. **Reference**: a forced batch ``tags run`` over the whole population (CPU per
   customer), against which the live re-tag's CPU per event is stated.
2. **In-process ingest** (the work ``POST /events`` and the consumer share):
   ``LiveTagger.apply`` on back-to-back micro-batches of ``--batch`` new events for
   random customers (at most ``--seconds`` and ``--max-batches`` per size); events/s,
   events per CPU-second, per-batch p50/p99.
3. **HTTP path**. ``--http-server real`` (the default): a real ``tagsmith serve`` of the
   project (own process group, 127.0.0.1, a free port, two keys of this run, stopped by
   PID), settled after ready and warmed by 2 s at 1,000 events/s; a client in its own
   process (asyncio + aiohttp, 48 keep-alive connections) offers the open-loop rates
   (``--rates``, ``--step-seconds`` each, ``--per-request`` events per ``POST
   /events``), each event's latency from when its request was due until the server
   answered (its live values are in ``/tags`` by then), the server's and the client's
   CPU per wall second beside it; one purchase per lapsed customer over HTTP until the
   server's ``POST /tags`` shows another lifecycle stage (p50, p99). The server is
   stopped before the NATS path. ``--http-server in-process``: the service runtime of
   ``tagsmith.app.build_runtime`` in this process, sharing the warmed tagger, called
   from 48 threads (no HTTP server, no framing: what earlier sessions reported as
   "HTTP"), plus the most 16 clients posting 100 events back to back get through. The
   report's ``http.server`` says which.
4. **NATS path**: a real nats-server (127.0.0.1, random port, temp dir) and the real
   consumer (``streaming.consumer.consume``) in a thread; the same probes, timed until
   the runtime's ``/tags`` shows the change (it polls live values every
   ``streaming.live_poll_s``), and the same offered rates published to the stream
   (``--per-message`` events per message), each event's latency from when it was due
   until its micro-batch was stored and tagged.

The knee is reported per path as the highest offered rate that passed (p99 <= 1 s, every
event done) and the first that did not. Every loop is bounded in count and
time, and the load steps stop once ``--budget-minutes`` have passed (reported as
skipped), so a run on a loaded machine ends. The report names the commit and the load
average at start and end.

Usage::

    PYTHONPATH=. python benchmarks/realtime.py [--customers 20000]
    cp -a /work/bench/p1m /tmp/p1m-copy   # the run adds live events and a snapshot
    PYTHONPATH=. /work/tools/big.sh python benchmarks/realtime.py --root /tmp/p1m-copy \\
        --customers 1000000
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
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks import realtime_load as load  # noqa: E402
from benchmarks import realtime_server as rs  # noqa: E402
from benchmarks.realtime_load import ms, pct  # noqa: E402


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


def _sustained(
    tagger: Any, ids: np.ndarray, batch: int, seconds: float, max_batches: int
) -> dict[str, Any]:
    """Micro-batches of ``batch`` new events for random customers, back to back, for
    ``seconds`` or ``max_batches`` batches, whichever ends first."""
    rng = np.random.default_rng(1)
    n = 0
    per_batch: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds and i < max_batches:
        chosen = rng.choice(ids, size=batch)
        now = pd.Timestamp.now(tz="UTC").isoformat()
        records = [
            {
                "event_id": f"s{time.time_ns()}-{i}-{j}",
                "customer_id": str(c),
                "occurred_at": now,
                "event_type": "login",
            }
            for j, c in enumerate(chosen)
        ]
        t, c0 = time.perf_counter(), time.process_time()
        result = tagger.apply(records, source="bench")
        per_batch.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c0)
        n += result.accepted
        i += 1
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "batches": i,
        "events": n,
        "events_per_s": round(n / elapsed, 1),
        "events_per_cpu_s": round(n / max(sum(cpu), 1e-9), 1),
        "batch_p50_ms": ms(pct(per_batch, 50)),
        "batch_p99_ms": ms(pct(per_batch, 99)),
        "batch_cpu_p50_ms": ms(pct(cpu, 50)),
    }


def _lapsed(project: Any, runtime: Any, n: int) -> list[str]:
    """``n`` customers lapsed in the snapshot and still lapsed in ``/tags`` (an earlier
    run on the same project may have made some active with live values)."""
    from serving.access import Caller

    reader = Caller("bench", "executive")
    snap = project.tag_store().snapshot(tags=["lifecycle_stage"])
    lapsed = snap[snap["value"].astype(str).isin(["churned", "dormant"])]
    out: list[str] = []
    for cid in lapsed["customer_id"].astype(str).tolist()[: 20 * n]:
        if load.stage(runtime, reader, cid) in ("churned", "dormant"):
            out.append(cid)
            if len(out) == n:
                break
    return out


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(_HERE.parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _reference(project: Any, predictors: list[Any], *, forced: bool) -> dict[str, Any]:
    """The batch run over the whole population, timed (the reference of the report).

    Forced: a project that already holds a run of the same inputs would otherwise return
    that run without computing anything, and the "reference" would time a lookup. Not
    forced (``--skip reference``), the run is still made when the project has none (live
    tags need one), and not reported.
    """
    from scoring.batch import run_tagging

    t, c0 = time.perf_counter(), time.process_time()
    run = run_tagging(
        facts=project.facts(),
        catalogue=project.catalogue(),
        store=project.tag_store(),
        predictors=predictors,
        force=forced,
    )
    batch_s, batch_cpu = time.perf_counter() - t, time.process_time() - c0
    if not forced:
        return {"skipped": True}
    return {
        "seconds": round(batch_s, 2),
        "cpu_seconds": round(batch_cpu, 2),
        "customers": run.run.n_customers,
        "cpu_ms_per_customer": round(1000 * batch_cpu / max(run.run.n_customers, 1), 4),
    }


def _real_http(
    project: Any, ids: np.ndarray, args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    """The HTTP path through a real ``tagsmith serve`` of ``project``
    (:class:`benchmarks.realtime_server.RealServer`), stopped before the answer."""
    work = Path(tempfile.mkdtemp(prefix="h15-rt-serve-"))
    started = time.perf_counter()
    server = rs.RealServer(project.root, work)
    try:
        ready_s = round(time.perf_counter() - started, 1)
        warm = rs.server_step(server, ids, np.random.default_rng(11), 1000, 50, 2.0)
        steps = load.http_rates(
            server,
            ids,
            args.rates,
            per_request=args.per_request,
            seconds=args.step_seconds,
            deadline=deadline,
            step=rs.server_step,
        )
        return {
            "server": "real (tagsmith serve; client in its own process over HTTP)",
            "server_ready_and_settled_s": ready_s,
            "warm_up": warm,
            "event_to_tags": rs.server_probes(
                server, rs.server_lapsed(project, server, args.probes)
            ),
            "offered_rates": steps,
            "knee": load.knee(steps),
        }
    finally:
        server.stop()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument(
        "--root",
        type=Path,
        help="use (or build) the project of benchmarks/big_project.py there: champions "
        "included, so live re-tags predict too (the project gains the live events and a "
        "reference snapshot: use a copy)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="per in-process batch size")
    parser.add_argument("--max-batches", type=int, default=200)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 50, 1000, 5000])
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument(
        "--rates", type=int, nargs="+", default=[50, 200, 500, 1000, 2000, 3000, 5000]
    )
    parser.add_argument("--step-seconds", type=float, default=5.0, help="per offered rate")
    parser.add_argument("--per-request", type=int, default=100, help="events per POST")
    parser.add_argument("--per-message", type=int, default=1, help="events per NATS message")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=14.0,
        help="the load steps stop (reported as skipped) once this much time has passed",
    )
    parser.add_argument(
        "--http-server",
        choices=["real", "in-process"],
        default="real",
        help="the HTTP path through a real tagsmith serve (client in another process) or "
        "through the service runtime in this process (no HTTP)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["reference", "http", "nats"])
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    began = time.perf_counter()
    deadline = began + 60 * args.budget_minutes
    load_start = _load()

    from serving.state import settle_heap
    from tagsmith.app import build_runtime
    from tagsmith.live import ServiceIngest, live_tagger

    t = time.perf_counter()
    predictors: list[Any] = []
    if args.root:
        from benchmarks.big_project import ensure_project
        from tagsmith.champions import champion_predictors

        project = ensure_project(args.root, args.customers)
        predictors = list(champion_predictors(project)[0])
    else:
        project = _project(Path(tempfile.mkdtemp(prefix="h15-rt-bench-")) / "p", args.customers)
    setup_s = time.perf_counter() - t
    reference = _reference(project, predictors, forced="reference" not in args.skip)
    n_events = project.fact_store().manifest()["events"]
    tagger, _ = live_tagger(project)
    t = time.perf_counter()
    tagger.warm()
    warm_s = time.perf_counter() - t
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    sustained = [_sustained(tagger, ids, b, args.seconds, args.max_batches) for b in args.batch]

    http: dict[str, Any] = {"skipped": True}
    if "http" not in args.skip and args.http_server == "real":
        # Before this process starts a runtime of its own: its live poll would read every
        # write of the server, on the server's two cores.
        http = _real_http(project, ids, args, deadline)
    runtime = build_runtime(project)
    ingest = runtime.event_ingest
    if not isinstance(ingest, ServiceIngest):
        sys.exit("the project's service has no event ingest (real-time tags are off)")
    ingest._tagger = tagger  # share the warmed tagger (one process)
    runtime.start()
    settle_heap()  # as the service's worker does after its runtime started
    lapsed = _lapsed(project, runtime, 2 * args.probes)
    if "http" not in args.skip and args.http_server == "in-process":
        steps = load.http_rates(
            runtime,
            ids,
            args.rates,
            per_request=args.per_request,
            seconds=args.step_seconds,
            deadline=deadline,
        )
        http = {
            "server": "in-process (ServingRuntime.ingest_events from 48 threads; no HTTP)",
            "event_to_tags": load.http_probes(runtime, lapsed[: args.probes]),
            "offered_rates": steps,
            "knee": load.knee(steps),
            "closed_loop_16x100": load.http_closed_loop(runtime, ids, 16, 100, args.seconds),
        }
    nats_out: dict[str, Any] = {"skipped": True}
    if "nats" not in args.skip:
        nats_out = load.nats_part(
            project,
            runtime,
            tagger,
            ids,
            lapsed[args.probes :],
            args.rates,
            per_message=args.per_message,
            seconds=args.step_seconds,
            deadline=deadline,
        )
    runtime.stop()

    best = max(sustained, key=lambda s: s["events_per_cpu_s"])
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "commit": _commit(),
            "load_average_start": load_start,
            "load_average_end": _load(),
        },
        "population": {
            "customers": len(ids),
            "events": n_events,
            "champions": [str(getattr(p, "version", p)) for p in predictors],
            "setup_s": round(setup_s, 1),
            "tagger_warm_s": round(warm_s, 2),
        },
        "reference_batch_run": reference,
        "in_process_ingest": sustained,
        "live_cpu_ms_per_event_vs_batch_cpu_ms_per_customer": (
            round((1000 / best["events_per_cpu_s"]) / reference["cpu_ms_per_customer"], 1)
            if "cpu_ms_per_customer" in reference
            else None
        ),
        "http": http,
        "nats": nats_out,
        "total_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
