"""The HTTP steps of ``benchmarks/realtime.py`` through a real server.

The steps of :mod:`benchmarks.realtime_load` call ``ServingRuntime.ingest_events`` from
threads of the benchmark's process: no HTTP server, no framing, no request parsing. The
functions here start a real ``tagsmith serve`` and drive it from a client in another
process, as a shop backend would. Every loop is bounded in count and in time, and each
event is dated from when its request was due (open loop, no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.realtime_load import (
    DRAIN_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    RUN,
    _probe_summary,
    _step_verdict,
    ms,
    pct,
    purchase,
)

CLIENT_CONNECTIONS = 48


class OpenLoopTally:
    """The bookkeeping of one open-loop step: every event is dated from when its request
    was due (not sent: a client or server falling behind shows in the latency) until its
    ``POST /events`` answered; refused (429) and failed events are counted, not timed."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.accepted = 0
        self.refused = 0
        self.failed = 0
        self.statuses: dict[str, int] = {}

    def answered(self, due: float, done: float, events: int, accepted: int) -> None:
        """A 200: each of its ``events`` took ``done - due``."""
        self.latencies.extend([done - due] * events)
        self.accepted += accepted
        self.statuses["200"] = self.statuses.get("200", 0) + 1

    def refusal(self, events: int) -> None:
        """A 429 (back-pressure): its events are refused."""
        self.refused += events
        self.statuses["429"] = self.statuses.get("429", 0) + 1

    def failure(self, events: int, status: str) -> None:
        """Any other answer, or none (a timeout, a lost connection)."""
        self.failed += events
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self, *, offered: int, events: int, elapsed: float) -> dict[str, Any]:
        """The step's figures; ``events`` were due, over ``elapsed`` seconds from the first
        due time to the last answer."""
        step = {
            "offered_per_s": offered,
            "achieved_per_s": round(self.accepted / elapsed, 1) if elapsed > 0 else None,
            "p50_ms": ms(pct(self.latencies, 50)),
            "p99_ms": ms(pct(self.latencies, 99)),
            "max_ms": ms(max(self.latencies)) if self.latencies else None,
            "refused": self.refused,
            "failed": self.failed,
            "not_done": events - len(self.latencies) - self.refused,
            "statuses": dict(sorted(self.statuses.items())),
        }
        return step


def request_due_times(n_requests: int, rate: float, size: int, start: float) -> np.ndarray:
    """When each of ``n_requests`` requests of ``size`` events offered at ``rate`` events/s
    is due: one every ``size / rate`` seconds from ``start``."""
    return start + np.arange(n_requests, dtype=np.float64) * (size / float(rate))


async def _open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Post ``spec["customers"]`` as browse events, ``size`` a request, each request at
    its due time (:func:`request_due_times`) on up to ``connections`` keep-alive
    connections; the step's :meth:`OpenLoopTally.summary` plus the client's CPU."""
    import aiohttp

    chosen: list[str] = spec["customers"]
    rate, size, tag = int(spec["rate"]), int(spec["size"]), spec["tag"]
    n_requests = max(1, len(chosen) // size)
    headers = {"X-API-Key": spec["key"], "Content-Type": "application/json"}
    url = spec["url"].rstrip("/") + "/events"
    tally = OpenLoopTally()
    connector = aiohttp.TCPConnector(limit=int(spec.get("connections", CLIENT_CONNECTIONS)))
    timeout = aiohttp.ClientTimeout(total=float(spec.get("request_timeout_s", 30.0)))
    last_done = [0.0]

    async def post(session: aiohttp.ClientSession, k: int, due: float) -> None:
        now = datetime.now(UTC).isoformat()
        records = [
            {
                "event_id": f"{spec['run']}-{tag}-{k}-{j}",
                "customer_id": c,
                "occurred_at": now,
                "event_type": "browse",
            }
            for j, c in enumerate(chosen[k * size : (k + 1) * size])
        ]
        body = json.dumps({"events": records}).encode()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.failure(len(records), type(exc).__name__)
            return
        done = time.perf_counter()
        last_done[0] = max(last_done[0], done)
        if status == 200:
            tally.answered(due, done, len(records), int(json.loads(payload)["accepted"]))
        elif status == 429:
            tally.refusal(len(records))
        else:
            tally.failure(len(records), str(status))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter() + 0.05
        dues = request_due_times(n_requests, rate, size, start)
        cpu0 = time.process_time()
        tasks = []
        for k in range(n_requests):
            delay = float(dues[k]) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(post(session, k, float(dues[k]))))
        _, late = await asyncio.wait(tasks, timeout=float(spec.get("drain_s", DRAIN_TIMEOUT_S)))
        for task in late:
            task.cancel()
        end = time.perf_counter()
        cpu = time.process_time() - cpu0
    step = tally.summary(
        offered=rate, events=n_requests * size, elapsed=max(last_done[0], start) - start
    )
    step.update(
        {
            "events_per_request": size,
            "requests": n_requests,
            "client_cpu_s_per_s": round(cpu / max(end - start, 1e-9), 3),
        }
    )
    return step


def http_client_main() -> None:
    """The client process: ``sys.argv[1]`` is the JSON spec of :func:`_open_loop`; its
    answer is written as JSON to ``sys.argv[2]``."""
    step = asyncio.run(_open_loop(json.loads(Path(sys.argv[1]).read_text())))
    Path(sys.argv[2]).write_text(json.dumps(step))


def _run_client(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run :func:`http_client_main` in its own process; its step (or why there is none)."""
    folder = Path(tempfile.mkdtemp(prefix="h15-rt-client-"))
    spec_path, out_path = folder / "spec.json", folder / "step.json"
    spec_path.write_text(json.dumps(spec))
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
        "from benchmarks.realtime_server import http_client_main; http_client_main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(spec_path), str(out_path)], start_new_session=True
    )
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        return dict(json.loads(out_path.read_text()))
    except (OSError, ValueError):
        return {"offered_per_s": spec["rate"], "client_exit": proc.returncode, "not_done": -1}
    finally:
        spec_path.unlink(missing_ok=True)
        out_path.unlink(missing_ok=True)
        folder.rmdir()


class RealServer:
    """A real ``tagsmith serve`` of the project at ``root`` (own process group, 127.0.0.1,
    a free port, stopped by PID) with two keys of its own: ``ingest`` (``write_events``)
    and ``executive`` (reads ``/tags``), revoked at :meth:`stop`."""

    def __init__(self, root: Path, workdir: Path) -> None:
        import httpx

        from benchmarks.serving_http import free_port, settle, start, wait_ready
        from tagsmith.project import Project

        self.root = root
        self.keys = Project.load(root).api_keys()
        self._names = (f"rt-ingest-{os.getpid()}", f"rt-reader-{os.getpid()}")
        self.ingest_key = self.keys.add(self._names[0], "ingest")
        self.reader_key = self.keys.add(self._names[1], "executive")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "serve.log"
        argv = [sys.executable, "-m", "tagsmith", "--project", str(root), "serve"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.process = start([*argv, "--host", "127.0.0.1", "--port", str(port)], env, self.log)
        try:
            wait_ready(f"{self.url}/readyz", self.process, self.log, timeout=300)
            # Ready is not idle: the service warms real-time tagging in the background.
            self.settled_s = round(settle(self.process.pid), 1)
        except BaseException:
            self.stop()
            raise
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's processes (the CLI, BentoML and its worker)."""
        from benchmarks.serving_http import server_cpu

        return server_cpu(self.process.pid)

    def stage(self, cid: str) -> str | None:
        """The customer's ``lifecycle_stage`` as ``POST /tags`` answers it."""
        answer = self.http.post(
            "/tags", json={"customer_ids": [cid]}, headers={"X-API-Key": self.reader_key}
        )
        answer.raise_for_status()
        for t in answer.json()["results"][0].get("tags") or []:
            if t["tag_id"] == "lifecycle_stage":
                return str(t["value"])
        return None

    def post_events(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /events`` with the ingest key; the answer (raises on an error status)."""
        answer = self.http.post(
            "/events", json={"events": records}, headers={"X-API-Key": self.ingest_key}
        )
        answer.raise_for_status()
        return dict(answer.json())

    def stop(self) -> None:
        """Stop the server by its process group and revoke the keys."""
        from benchmarks.serving_http import stop

        if getattr(self, "http", None) is not None:
            self.http.close()
        stop(self.process)
        for name in self._names:
            with contextlib.suppress(Exception):
                self.keys.revoke(name)


def server_lapsed(project: Any, server: RealServer, n: int) -> list[str]:
    """``n`` customers lapsed in the project's snapshot and still lapsed in the server's
    ``/tags`` (an earlier run on the same project may have made some active)."""
    snap = project.tag_store().snapshot(tags=["lifecycle_stage"])
    lapsed = snap[snap["value"].astype(str).isin(["churned", "dormant"])]
    out: list[str] = []
    for cid in lapsed["customer_id"].astype(str).tolist()[: 20 * n]:
        if server.stage(cid) in ("churned", "dormant"):
            out.append(cid)
            if len(out) == n:
                break
    return out


def server_probes(server: RealServer, customers: list[str]) -> dict[str, Any]:
    """One purchase per lapsed customer through the server's ``POST /events``; time until
    its ``POST /tags`` shows another lifecycle stage (at most :data:`PROBE_TIMEOUT_S`)."""
    lat: list[float] = []
    missed = 0
    for i, cid in enumerate(customers):
        before = server.stage(cid)
        t = time.perf_counter()
        server.post_events([purchase(cid, f"{RUN}-hp-{i}")])
        changed = False
        while time.perf_counter() - t < PROBE_TIMEOUT_S:
            if server.stage(cid) != before:
                changed = True
                break
            time.sleep(0.002)
        if changed:
            lat.append(time.perf_counter() - t)
        else:
            missed += 1
    return _probe_summary(lat, missed)


def server_step(
    server: RealServer,
    ids: np.ndarray,
    rng: np.random.Generator,
    rate: int,
    size: int,
    seconds: float,
) -> dict[str, Any]:
    """One offered rate through the real server, the client in its own process
    (:func:`http_client_main`); the server's CPU over the step beside the client's."""
    n_requests = max(1, int(rate * seconds / size))
    spec = {
        "run": RUN,
        "url": server.url,
        "key": server.ingest_key,
        "rate": rate,
        "size": size,
        "tag": f"s{rate}-{time.time_ns()}",
        "customers": [str(c) for c in rng.choice(ids, size=n_requests * size)],
        "connections": CLIENT_CONNECTIONS,
        "drain_s": DRAIN_TIMEOUT_S,
    }
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    step = _run_client(spec, timeout_s=seconds + DRAIN_TIMEOUT_S + 30)
    wall = time.perf_counter() - t0
    step["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / wall, 2)
    step["passed"] = _step_verdict(step) and not step.get("failed")
    return step
