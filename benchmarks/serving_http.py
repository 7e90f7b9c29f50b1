"""HTTP load for ``benchmarks/serving.py``: start a server in its own process group, wait
until it is ready and settled, send bounded request loops (aiohttp), measure latency and
the server's CPU, stop it by PID."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np


@dataclass
class Result:
    server: str
    scenario: str
    requests: int
    rows_per_request: int
    concurrency: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_share: float
    server_cpu_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.requests * self.rows_per_request / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def load(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    headers: dict[str, str],
    check: Callable[[int, bytes], bool],
) -> tuple[list[float], int, float, float]:
    """Send every body once with ``concurrency`` workers; (latencies, errors, wall, cpu)."""
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    payload = await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - start)
                if not check(status, payload):
                    errors += 1

        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return latencies, errors, wall, cpu


def server_cpu(pid: int) -> float:
    """CPU seconds of the server process and its children (BentoML/uvicorn workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def run_scenario(
    server: str,
    scenario: str,
    url: str,
    bodies: Sequence[bytes],
    *,
    rows: int,
    concurrency: int,
    headers: dict[str, str],
    check: Callable[[int, bytes], bool],
    server_pid: int,
) -> Result:
    cpu_before = server_cpu(server_pid)
    latencies, errors, wall, cpu = asyncio.run(
        load(url, bodies, concurrency=concurrency, headers=headers, check=check)
    )
    server_seconds = server_cpu(server_pid) - cpu_before
    ms = np.asarray(latencies) * 1000
    return Result(
        server=server,
        scenario=scenario,
        requests=len(bodies),
        rows_per_request=rows,
        concurrency=concurrency,
        seconds=wall,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        errors=errors,
        client_cpu_share=cpu / wall,
        server_cpu_ms=1000 * server_seconds / len(bodies),
    )


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def settle(
    pid: int, *, idle_share: float = 0.05, window_s: float = 1.0, timeout: float = 180
) -> float:
    """Wait until the server's start-up work in the background is over; seconds waited.

    Ready is not idle: after ``/readyz`` answers, the service still warms real-time
    tagging and the console in threads (seconds of CPU on a big project), which a
    request loop started at once would measure as its own latency and server CPU.
    Settled: the server's processes used under ``idle_share`` of a core for ``window_s``.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = server_cpu(pid)
        time.sleep(window_s)
        if server_cpu(pid) - before < idle_share * window_s:
            break
    return time.monotonic() - start


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


HEADER = (
    f"{'server':<22}{'scenario':<30}{'req':>7}{'req/s':>9}{'rows/s':>10}"
    f"{'p50 ms':>9}{'p99 ms':>9}{'err':>5}{'client CPU':>12}{'server CPU ms/req':>19}"
)


def print_row(r: Result) -> None:
    print(
        f"{r.server:<22}{r.scenario:<30}{r.requests:>7}{r.rps:>9.0f}{r.rows_per_s:>10.0f}"
        f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>5}{r.client_cpu_share:>11.0%}"
        f"{r.server_cpu_ms:>19.2f}",
        flush=True,
    )
