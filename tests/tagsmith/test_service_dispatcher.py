"""The service hosts the dispatcher loop when ``activation.in_service`` is on."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from tags.store import TagStore
from tagsmith.activate import DispatcherThread, HostedRuntime
from tagsmith.app import build_runtime
from tagsmith.cli import main
from tagsmith.project import Project
from tests.activation.receiver import Receiver
from tests.tags.conftest import long_table

ENV = {"TAGSMITH_USER": "tester", "TAGSMITH_ROLE": None, "CRM_SECRET": "x"}


def cli(root: Path, *args: str) -> None:
    result = CliRunner().invoke(main, ["--project", str(root), *args], env=ENV)
    assert result.exit_code == 0, result.output


def test_build_runtime_hosts_the_loop_only_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "p"
    cli(root, "init")
    assert not isinstance(build_runtime(Project.load(root)), HostedRuntime)
    config = root / "tagsmith.yaml"
    config.write_text(config.read_text().replace("in_service: false", "in_service: true"))
    runtime = build_runtime(Project.load(root))
    assert isinstance(runtime, HostedRuntime)
    assert isinstance(runtime.dispatcher, DispatcherThread)


def test_the_hosted_loop_delivers_and_stops(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CRM_SECRET", "x")
    receiver = Receiver(secret=b"x").up()
    root = tmp_path / "p"
    try:
        cli(root, "init")
        store = TagStore(root / "data" / "tags.duckdb")
        store.write_snapshot(
            long_table([("a", "old_customer", "true")], "2024-01-31"), as_of="2024-01-31"
        )
        cli(
            root,
            "triggers",
            "add",
            "gone",
            "--on-exit",
            "old_customer",
            "--webhook",
            receiver.url,
            "--secret-env",
            "CRM_SECRET",
        )
        cli(root, "triggers", "apply", "--role", "admin")
        hosts = [DispatcherThread(Project.load(root)) for _ in range(2)]
        for host in hosts:  # a second host (another worker) waits for the lock
            host.start()
        store.write_snapshot(
            long_table([("b", "old_customer", "true")], "2024-02-29"), as_of="2024-02-29"
        )
        deadline = time.monotonic() + 20
        while not receiver.events() and time.monotonic() < deadline:
            time.sleep(0.05)
        for host in hosts:
            host.stop()
        assert [(e["customer_id"], e["change"]) for e in receiver.events()] == [("a", "left")]
        assert all(host._thread is None for host in hosts)
    finally:
        receiver.down()
