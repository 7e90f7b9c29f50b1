"""A real ``tagsmith serve`` (and other CLI processes) for the slow real-time tests.

Each process runs in its own session (so the whole group can be signalled), logs to a
file in its work dir and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.serving.live import REPO, free_port


def env(workdir: Path) -> dict[str, str]:
    """The environment of a child process: the repo importable, no telemetry."""
    out = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BENTOML_HOME": str(workdir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def start(
    argv: list[str], workdir: Path, name: str, *, environ: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, output appended to ``workdir/NAME.log``."""
    log = (workdir / f"{name}.log").open("ab")
    return subprocess.Popen(
        argv,
        cwd=workdir,
        env=environ or env(workdir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _descendants(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_all(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and every descendant at once.

    BentoML starts its worker in a session of its own: signalling the process group
    of ``bentoml serve`` alone would leave the worker (the process doing the work)
    running as an orphan.
    """
    children = _descendants(proc)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _kill_all(children)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (BentoML stops its worker); SIGKILL what lingers."""
    children = _descendants(proc)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=10)
    _kill_all(alive)


def serve(
    project_root: Path, workdir: Path, *, direct: bool = False, timeout_s: float = 180
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``tagsmith serve`` on 127.0.0.1 and wait until ``/readyz`` answers 200.

    ``direct`` starts the process ``tagsmith serve`` starts (``bentoml serve`` of
    ``tagsmith.app:TagService`` with the project's environment) without the CLI process
    in front of it: the same service, one interpreter start-up less.
    """
    port = free_port()
    where = ["--host", "127.0.0.1", "--port", str(port)]
    if direct:
        from tagsmith.app import SERVICE, service_env
        from tagsmith.project import Project

        environ = service_env(Project.load(project_root), base=env(workdir))
        argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, *where]
        proc = start(argv, workdir, "serve", environ=environ)
    else:
        argv = [sys.executable, "-m", "tagsmith", "--project", str(project_root), "serve"]
        proc = start([*argv, *where], workdir, "serve")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "serve.log").read_text(errors="replace")[-4000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("tagsmith serve did not become ready")
        time.sleep(0.3)


def wait_events_ready(url: str, key: str, *, timeout_s: float = 120) -> None:
    """Wait until ``POST /events`` answers (real-time tagging warms up after start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ready = httpx.post(
                f"{url}/events", json={"events": []}, headers={"X-API-Key": key}, timeout=30
            )
            if ready.status_code == 200:
                return
            detail = ready.text
        except httpx.HTTPError as exc:
            detail = str(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST /events did not become ready: {detail}")
        time.sleep(0.5)
