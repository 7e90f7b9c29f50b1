"""A real ``bentoml serve`` subprocess of the tag service, for the slow tier."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import bentoml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Stop the server's process group (its session leader is our child)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start(
    env: Mapping[str, str], workdir: Path, *, target: str, timeout_s: float = 90
) -> LiveServer:
    """Start ``bentoml serve TARGET`` (``module:Service``) on a free loopback port."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BENTOML_HOME": str(workdir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    try:
        with bentoml.SyncHTTPClient(server.url, server_ready_timeout=timeout_s):
            pass
    except Exception as exc:
        server.stop()
        raise RuntimeError(f"tag service did not start: {exc}\n{server.log()}") from exc
    if time.monotonic() > deadline:
        server.stop()
        raise RuntimeError(f"tag service too slow to start\n{server.log()}")
    return server
