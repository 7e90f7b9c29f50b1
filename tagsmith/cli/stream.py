"""``tagsmith stream run|publish``: the NATS JetStream side of real-time tags."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import click

from streaming.config import StreamingConfig
from streaming.consumer import ConsumerReport, consume, publish_events
from streaming.errors import StreamingError
from streaming.tagger import ApplyResult
from tags.audit import default_actor
from tagsmith.cli._common import console, err_console, pass_project
from tagsmith.cli._governance import require, resolve_role, role_option
from tagsmith.live import live_tagger
from tagsmith.project import Project

__all__ = ["COMMANDS", "publish", "run"]


def _settings(project: Project, url: str | None, subject: str | None) -> StreamingConfig:
    cfg = project.config.streaming
    updates: dict[str, Any] = {}
    if url:
        updates["nats_url"] = url
    if subject:
        updates["subject"] = subject
    return cfg.model_copy(update=updates)


@click.command()
@click.option("--nats", "url", default=None, help="NATS server URL (default: streaming.nats_url).")
@click.option("--subject", default=None, help="Subjects to consume (default: streaming.subject).")
@click.option("--max-seconds", type=float, default=None, help="Stop after this long.")
@click.option("--max-messages", type=int, default=None, help="Stop after this many messages.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@role_option
@pass_project
def run(
    project: Project,
    url: str | None,
    subject: str | None,
    max_seconds: float | None,
    max_messages: int | None,
    fmt: str,
    role: str | None,
) -> None:
    """Consume events from a NATS JetStream stream and tag them in real time.

    A durable consumer: it resumes where it stopped, acknowledges each message after its
    events are stored and tagged, and stops cleanly on Ctrl-C or SIGTERM.
    """
    role = resolve_role(project, role)
    require(project, role, "write_events", query="stream run")
    cfg = _settings(project, url, subject)
    tagger, notices = live_tagger(project)
    for note in notices:
        err_console.print(f"[yellow]notice:[/] {note}")
    tagger.warm()
    from serving.state import settle_heap  # the serving stack, only when consuming

    settle_heap()  # as the service's worker does: what is loaded now stays for good
    report = ConsumerReport()
    started = time.monotonic()

    def on_batch(result: ApplyResult, total: ConsumerReport) -> None:
        if fmt == "json":
            click.echo(json.dumps(result.to_json()))
        else:
            err_console.print(
                f"batch: {result.received} events, {result.accepted} stored, "
                f"{result.duplicates} duplicates, {sum(result.quarantined.values())} quarantined, "
                f"{result.customers} customers re-tagged, {result.changes} tag changes "
                f"({1000 * result.seconds:.0f} ms)"
            )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if max_seconds is not None:
            loop.call_later(max_seconds, stop.set)
        await consume(
            tagger,
            cfg,
            url=cfg.nats_url,
            subject=cfg.subject,
            stop=stop,
            report=report,
            on_batch=on_batch,
            max_messages=max_messages,
        )

    err_console.print(
        f"consuming {cfg.subject} from {cfg.nats_url} (stream {cfg.stream}, "
        f"durable {cfg.durable}); Ctrl-C stops"
    )
    try:
        asyncio.run(main())
    except OSError as exc:  # nats connection errors derive from it or from Exception
        raise StreamingError(f"Expected a NATS server at {cfg.nats_url}. Got: {exc}") from exc
    finally:
        tagger.close()
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="write_events",
        n_customers=0,
        query=f"stream run {cfg.subject}",
        extra=report.to_json(),
    )
    summary = report.to_json() | {"seconds": round(time.monotonic() - started, 1)}
    if fmt == "json":
        click.echo(json.dumps({"summary": summary}))
    else:
        console.print(
            f"stopped: {summary['messages']:,} messages, {summary['accepted']:,} events stored, "
            f"{summary['duplicates']:,} duplicates, {summary['quarantined']:,} quarantined, "
            f"{summary['failures']} failed batches (redelivered)"
        )


@click.command()
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--nats", "url", default=None, help="NATS server URL (default: streaming.nats_url).")
@click.option(
    "--subject", default="events.import", show_default=True, help="Subject to publish on."
)
@click.option("--per-message", type=int, default=1, show_default=True, help="Events a message.")
@pass_project
def publish(
    project: Project, events_file: Path, url: str | None, subject: str, per_message: int
) -> None:
    """Publish events from a JSON-lines file (one event object per line) to the stream."""
    cfg = _settings(project, url, None)
    lines = [ln for ln in events_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    bodies = [
        ("[" + ",".join(lines[i : i + per_message]) + "]").encode()
        if per_message > 1
        else lines[i].encode()
        for i in range(0, len(lines), per_message)
    ]
    try:
        asyncio.run(publish_events(cfg, cfg.nats_url, subject, bodies))
    except OSError as exc:
        raise StreamingError(f"Expected a NATS server at {cfg.nats_url}. Got: {exc}") from exc
    console.print(f"published {len(lines):,} events in {len(bodies):,} messages to {subject}")


COMMANDS = [run, publish]
