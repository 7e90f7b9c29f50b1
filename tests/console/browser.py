"""A real ``tagsmith serve`` and a real Chromium, for the console's browser tests.

The server is ``python -m tagsmith serve`` on 127.0.0.1 and a free port, in its own
process group, stopped by PID. The browser is Debian's ``chromium`` (``make test``
installs it: ``scripts/ensure-chromium.sh``) driven by Playwright through its
executable path, headless, with a fresh profile per user in a temp folder; Playwright
never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 860}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Stop the server's process group (``tagsmith serve`` and its BentoML workers)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def start_server(project: Path, workdir: Path, *, timeout_s: float = 180) -> Server:
    """``tagsmith serve`` of ``project``; returns once the console answers with data."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BENTOML_HOME": str(workdir / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [sys.executable, "-m", "tagsmith", "--project", str(project), "serve"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tagsmith serve exited with {process.returncode}\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/ui/login", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tagsmith serve did not answer in {timeout_s:.0f} s\n{server.log()}")


def chromium_path() -> str:
    """Debian's chromium; a clear failure when it is missing (``make test`` installs it)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError(
            "Expected Debian's 'chromium' on PATH for the browser tests. Got none: run "
            "'make test' (it installs it) or 'bash scripts/ensure-chromium.sh'."
        )
    return path


@contextmanager
def browser(playwright: Any, profile: Path, *, javascript: bool = True) -> Iterator[Any]:
    """A headless Chromium with a fresh profile in ``profile``; yields one page."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        java_script_enabled=javascript,
        locale="en-US",
    )
    try:
        context.set_default_timeout(30_000)
        yield context.pages[0] if context.pages else context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """Save a full-page PNG to ``$TAGSMITH_SCREENSHOTS/<name>.png`` when that is set."""
    folder = os.environ.get("TAGSMITH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
