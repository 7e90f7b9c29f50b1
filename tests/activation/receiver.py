"""A real webhook receiver on 127.0.0.1 for delivery tests, with scripted faults.

It runs a threading HTTP server on a random port in the test process, verifies each
request's signature as a receiver would, and records every request (attempts
included). ``faults`` is a list of modes consumed one per request: ``ok``, ``500``,
``429`` (with ``Retry-After``), ``timeout`` (sleeps past the client's timeout, then
answers), ``close`` (drops the connection without an answer), ``400``. ``down()`` closes
the listening socket (connections are refused) and ``up()`` reopens the same port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activation.signing import verify_signature


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    mode: str
    signature_ok: bool | None
    at: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body)["events"])


@dataclass
class Receiver:
    secret: bytes | None = None
    faults: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    timeout_sleep_s: float = 1.5
    retry_after: str = "1"
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                mode = receiver._next_mode()
                headers = {k: v for k, v in self.headers.items()}
                ok = (
                    None
                    if receiver.secret is None
                    else verify_signature(receiver.secret, headers, body)
                )
                with receiver._lock:
                    receiver.requests.append(Received(headers, body, mode, ok, time.time()))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if mode == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "timeout":
                    time.sleep(receiver.timeout_sleep_s)
                status = {"ok": 200, "timeout": 200, "500": 500, "429": 429, "400": 400}[mode]
                if ok is False:
                    status = 401
                payload = b'{"ok": true}' if status == 200 else b'{"error": "x"}'
                self.send_response(status)
                if mode == "429":
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _next_mode(self) -> str:
        with self._lock:
            return self.faults.pop(0) if self.faults else "ok"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    # -- what arrived ----------------------------------------------------------------
    def delivered(self) -> list[Received]:
        """Requests answered 2xx (what the receiver accepted)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.mode in ("ok", "timeout") and r.signature_ok is not False
            ]

    def events(self, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            reqs = list(self.requests)
        if accepted_only:
            reqs = [r for r in reqs if r.mode in ("ok", "timeout")]
        return [e for r in reqs for e in r.events]
