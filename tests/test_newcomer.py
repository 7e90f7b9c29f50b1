"""The README's "your own data" walkthrough, run command by command as a newcomer would.

Two CSVs in a layout Tagsmith has never seen (semicolons, other column names, day-first
dates) are written from the synthetic generator; then every line of the README block
between ``<!-- newcomer:start -->`` and ``<!-- newcomer:end -->`` runs as written: exports
set the environment, ``tagsmith`` lines run the CLI, ``KEY=$(...)`` captures a key, the
``&`` line starts the real service (on a free port instead of 3000) and ``curl`` asks
``/tags``. Nothing passes ``--role`` to a CLI action or sets ``TAGSMITH_ROLE``: a local
project is owned by whoever runs the CLI, and the audit log says so.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tags.audit import AuditLog
from tagsmith.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def walkthrough() -> list[str]:
    """The block's shell lines, continuations joined, comments and blanks dropped."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- newcomer:start -->", 1)[1].split("<!-- newcomer:end -->", 1)[0]
    body = block.split("```bash", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", body)
    return [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]


def write_exports(folder: Path, n: int = 1000) -> None:
    """customers.csv and orders.csv as the README shows them, from the generator."""
    from synthetic import generate

    data = generate(n, start="2023-01-01", end="2024-12-31", seed=3)
    ids = {c: f"M{i:05d}" for i, c in enumerate(data.customers["customer_id"], 1)}
    customers = data.customers.assign(
        MemberNo=data.customers["customer_id"].map(ids),
        JoinedOn=data.customers["signup_at"].dt.strftime("%d/%m/%Y"),
    )[["MemberNo", "JoinedOn"]]
    customers.to_csv(folder / "customers.csv", sep=";", index=False)
    buys = data.events[data.events["event_type"] == "purchase"]
    orders = buys.assign(
        OrderRef=[f"SO-{i}" for i in range(len(buys))],
        Member=buys["customer_id"].map(ids),
        OrderDate=buys["occurred_at"].dt.strftime("%d/%m/%Y"),
        TotalEUR=buys["amount"].round(2),
    )[["OrderRef", "Member", "OrderDate", "TotalEUR"]]
    orders.to_csv(folder / "orders.csv", sep=";", index=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_block_has_no_role_flag_on_cli_actions() -> None:
    for line in walkthrough():
        assert "TAGSMITH_ROLE" not in line, line
        if "--role" in line:
            assert "serve keys add" in line, line  # a key's role is the service's, by design


@pytest.mark.slow
def test_a_newcomer_goes_from_two_csvs_to_a_tag_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_exports(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "TAGSMITH_PROJECT", "TAGSMITH_ROLE")
    for name in (*names, "TAGSMITH_USER"):
        monkeypatch.delenv(name, raising=False)
    env: dict[str, str] = {}
    server: subprocess.Popen[bytes] | None = None
    port = _free_port()
    promoted = False
    answered = None
    try:
        for line in walkthrough():
            monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # each command: a process
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").split("#")[0].strip().partition("=")
                env[key] = value
                continue
            if line.startswith("curl "):
                answered = _curl(line, env, port)
                continue
            capture = re.fullmatch(r"(\w+)=\$\((.*)\)", line)
            argv = shlex.split(capture.group(2) if capture else line, comments=True)
            assert argv[0] == "tagsmith", line
            if argv[-1] == "&":
                server = _start_server(argv[1:-1], env, port, tmp_path)
                continue
            result = CliRunner().invoke(main, argv[1:], env=env)
            if argv[1:3] == ["models", "promote"]:
                assert result.exit_code in (0, 1), (line, result.output)  # 1: a baseline won
                promoted = result.exit_code == 0
            else:
                assert result.exit_code == 0, (line, result.output)
            if capture:
                env[capture.group(1)] = result.stdout.strip()
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    assert answered is not None
    (customer,) = answered["results"]
    assert customer["customer_id"] == "M00001"
    assert customer["found"] is True
    tags = {t["tag_id"] for t in customer["tags"]}
    assert {"lifecycle_stage", "old_customer"} <= tags
    assert ("churn_risk" in tags) == promoted
    assert not (tmp_path / "shop" / "data" / "quarantine").exists() or not any(
        (tmp_path / "shop" / "data" / "quarantine").iterdir()
    )
    # The runs were the owner's, audited under the OS user.
    entries = AuditLog(tmp_path / "shop" / "data" / "audit.log").entries()
    runs = [e for e in entries if e["action"] == "run"]
    assert runs
    assert {(e["role"], e["actor"]) for e in runs} == {("owner", getpass.getuser())}


def _start_server(
    args: list[str], env: dict[str, str], port: int, cwd: Path
) -> subprocess.Popen[bytes]:
    args = [a if a != "3000" else str(port) for a in args]
    log = (cwd / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tagsmith", *args, "--host", "127.0.0.1"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, (cwd / "serve.log").read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError((cwd / "serve.log").read_text(errors="replace")[-3000:])


def _curl(line: str, env: dict[str, str], port: int) -> dict:
    """Run the README's curl line with httpx: its URL, headers and body, $KEY expanded."""
    argv = shlex.split(line)
    headers, body, url = {}, None, None
    it = iter(argv[1:])
    for arg in it:
        if arg == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip().replace("$KEY", env["KEY"])
        elif arg == "-d":
            body = next(it)
        elif arg in ("-X",):
            next(it)
        elif not arg.startswith("-"):
            url = arg
    assert url is not None, line
    url = "http://" + url.replace("localhost:3000", f"127.0.0.1:{port}")
    response = httpx.post(url, headers=headers, content=body, timeout=30)
    assert response.status_code == 200, response.text
    return json.loads(response.text)
