"""The HTTP steps of ``benchmarks/realtime.py`` alone, for A/B runs of two commits.

``--server real`` (the default): a real ``tagsmith serve`` of the project (its own
process group, 127.0.0.1, a free port, stopped by PID; the project's config and two keys
of this run, ``ingest`` and ``executive``), settled after ready; then a client in another
process (asyncio + aiohttp, 48 keep-alive connections) posts a 2 s warm-up at 1,000
events/s and the open-loop offered rates of ``benchmarks/realtime_load.py`` (``--rates``,
``--seconds`` each), each event timed from when its request was due until its ``POST
/events`` answered; the server's and the client's CPU per wall second beside it; then
purchase -> changed ``lifecycle_stage`` in ``POST /tags`` probes over HTTP.

``--server in-process``: the service runtime (``tagsmith.app.build_runtime``) with its
warmed tagger in this process, 48 client threads calling ``ingest_events`` (no HTTP
server, no framing: the figure earlier sessions called "HTTP"), and the 16-client
closed loop. Run from the checkout whose code is measured (``PYTHONPATH=.``), on a fresh
copy of the project each time.

Usage::

    cp -a /tmp/p1m /tmp/copy
    PYTHONPATH=. TAGSMITH_CONFIG_DIR=/tmp/cfg python benchmarks/realtime_http.py \\
        --root /tmp/copy --rates 3000 5000 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import os
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

from benchmarks import realtime_load as load  # noqa: E402
from benchmarks import realtime_server as rs  # noqa: E402


def _in_process(args: argparse.Namespace, project: Any) -> dict[str, Any]:
    from serving.state import settle_heap
    from tagsmith.app import build_runtime
    from tagsmith.live import ServiceIngest, live_tagger

    tagger, _ = live_tagger(project)
    tagger.warm()
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    runtime = build_runtime(project)
    ingest = runtime.event_ingest
    if not isinstance(ingest, ServiceIngest):
        sys.exit("the project's service has no event ingest (real-time tags are off)")
    ingest._tagger = tagger  # the warmed tagger, as benchmarks/realtime.py shares it
    runtime.start()
    settle_heap()  # as the service's worker does after its runtime started
    load.http_rates(
        runtime, ids, [1000], per_request=50, seconds=2, deadline=time.perf_counter() + 100
    )
    load_start = [round(x, 2) for x in os.getloadavg()]
    rng = np.random.default_rng(7)
    steps = [
        load._http_step(
            runtime, ids, rng, rate, min(args.per_request, max(1, rate // 20)), args.seconds
        )
        for rate in args.rates
    ]
    closed = load.http_closed_loop(runtime, ids, 16, 100, 6.0)
    load_end = [round(x, 2) for x in os.getloadavg()]
    runtime.stop()
    return {
        "server": "in-process (ServingRuntime.ingest_events from 48 threads; no HTTP)",
        "load_average_start": load_start,
        "load_average_end": load_end,
        "steps": steps,
        "closed_loop_16x100": closed,
    }


def _real(args: argparse.Namespace, project: Any) -> dict[str, Any]:
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    work = Path(tempfile.mkdtemp(prefix="h15-rt-http-"))
    started = time.perf_counter()
    server = rs.RealServer(args.root, work)
    try:
        ready_s = round(time.perf_counter() - started, 1)
        rng = np.random.default_rng(11)
        warm = rs.server_step(server, ids, rng, 1000, 50, 2.0)
        load_start = [round(x, 2) for x in os.getloadavg()]
        rng = np.random.default_rng(7)
        steps = [
            rs.server_step(
                server, ids, rng, rate, min(args.per_request, max(1, rate // 20)), args.seconds
            )
            for rate in args.rates
        ]
        load_end = [round(x, 2) for x in os.getloadavg()]
        probes = rs.server_probes(server, rs.server_lapsed(project, server, args.probes))
    finally:
        server.stop()
    return {
        "server": "real (tagsmith serve; client in its own process over HTTP)",
        "server_ready_and_settled_s": ready_s,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "warm_up": warm,
        "steps": steps,
        "event_to_tags": probes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rates", type=int, nargs="+", default=[3000, 5000])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--probes", type=int, default=20, help="real server only")
    parser.add_argument("--server", choices=["real", "in-process"], default="real")
    args = parser.parse_args()

    from benchmarks.big_project import ensure_project

    project = ensure_project(args.root, args.customers)
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = _real(args, project) if args.server == "real" else _in_process(args, project)
    print(json.dumps({"commit": commit, **out}, indent=1))


if __name__ == "__main__":
    main()
