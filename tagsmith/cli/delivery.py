"""``tagsmith triggers deliveries|replay|run``: the outbox and the dispatcher.

Deliveries are batches in the project's outbox (``data/activation.sqlite``): their state,
attempts, last status and error; dead letters are replayed with the same body and
idempotency keys. ``run`` is the dispatcher loop (the service can host it too).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from activation.dispatcher import Dispatcher, DispatchReport
from activation.errors import DispatcherBusy
from tags.audit import default_actor
from tagsmith.activate import activation_of
from tagsmith.cli._common import console, err_console, format_option, pass_project
from tagsmith.cli._governance import require, resolve_role, role_option
from tagsmith.project import Project

__all__ = ["COMMANDS", "deliveries", "replay", "run"]


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.option("--state", type=click.Choice(["due", "sending", "delivered", "dead"]), default=None)
@click.option("--trigger", "source", default=None, help="Only batches of this trigger or sync.")
@click.option("--destination", default=None, help="Only batches to this destination.")
@click.option("--last", type=int, default=20, show_default=True)
@click.option("--batch", "batch_id", type=int, default=None, help="One batch with its attempts.")
@click.option("--body", is_flag=True, help="With --batch: print the body (holds customer ids).")
@format_option
@role_option
@pass_project
def deliveries(
    project: Project,
    state: str | None,
    source: str | None,
    destination: str | None,
    last: int,
    batch_id: int | None,
    body: bool,
    fmt: str,
    role: str | None,
) -> None:
    """Delivery batches: state, attempts, last status and error; dead letters with --state dead."""
    role = resolve_role(project, role)
    require(project, role, "read", query="triggers deliveries")
    outbox = project.outbox()
    if batch_id is not None:
        record = outbox.batch(batch_id)
        payload = record.pop("body")
        if body:
            require(project, role, "export", query=f"triggers deliveries --batch {batch_id} --body")
            project.audit_log().append(
                actor=default_actor(),
                role=role,
                action="export",
                n_customers=record["n_items"],
                query=f"delivery batch {batch_id} body",
            )
            record["body"] = json.loads(bytes(payload))
        click.echo(json.dumps(record, ensure_ascii=False, indent=1, default=str))
        return
    rows = outbox.batches(state=state, source=source, destination=destination, last=last)
    summary = outbox.counts()
    if fmt == "json":
        click.echo(json.dumps({"counts": summary, "batches": rows}, ensure_ascii=False, indent=1))
        return
    if summary:
        console.print(
            "events: "
            + "; ".join(
                f"{r['source']} -> {r['destination']} {r['state']} {r['n']:,}" for r in summary
            ),
            soft_wrap=True,
        )
    if not rows:
        console.print(
            "no delivery batches" + (f" in state {state}" if state else ""), soft_wrap=True
        )
        return
    table = Table(show_edge=False)
    for col in (
        "batch",
        "destination",
        "from",
        "events",
        "state",
        "attempts",
        "status",
        "error",
        "next / done",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        when = (
            _when(r["finished_at"])
            if r["state"] in ("delivered", "dead")
            else _when(r["next_attempt_at"])
        )
        table.add_row(
            str(r["id"]),
            r["destination"],
            ", ".join(r["sources"]),
            str(r["n_items"]),
            r["state"],
            str(r["attempts"]),
            str(r["last_status"] or ""),
            r["last_error"] or "",
            when,
        )
    console.print(table)


# ---------------------------------------------------------------------------- replay, run
@click.command()
@click.argument("batch_ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Every dead batch (with --trigger/--destination).")
@click.option("--trigger", "source", default=None)
@click.option("--destination", default=None)
@click.option(
    "--deliver/--no-deliver",
    default=True,
    show_default=True,
    help="Try them now (unless a running dispatcher holds the lock).",
)
@role_option
@pass_project
def replay(
    project: Project,
    batch_ids: tuple[int, ...],
    all_dead: bool,
    source: str | None,
    destination: str | None,
    deliver: bool,
    role: str | None,
) -> None:
    """Send dead letters again: same body, same idempotency keys, attempts reset."""
    if not batch_ids and not all_dead:
        raise click.UsageError(
            "Expected batch ids (tagsmith triggers deliveries --state dead) or --all-dead."
        )
    role = resolve_role(project, role)
    require(project, role, "export", query="triggers replay")
    moved = project.outbox().replay(batch_ids=batch_ids, source=source, destination=destination)
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="replay",
        query="triggers replay",
        extra={"batches": moved},
    )
    console.print(
        f"{len(moved)} dead batch(es) due again: {', '.join(map(str, moved)) or 'none'}",
        soft_wrap=True,
    )
    if deliver and moved:
        report = _dispatch(
            project, until="idle", max_seconds=project.config.activation.deliver_after_run_s
        )
        if report is not None:
            console.print(_summary(report), soft_wrap=True)


def _summary(report: DispatchReport) -> str:
    return (
        f"{report.groups} transition group(s), {sum(report.fired.values()):,} fired, "
        f"{report.delivered:,} delivered in {report.batches:,} batch(es), {report.retries:,} "
        f"failed attempt(s) to retry, {report.dead:,} dead letters ({report.seconds:.1f} s, "
        f"{report.stopped})"
    )


def _dispatch(project: Project, **kwargs: Any) -> DispatchReport | None:
    try:
        return Dispatcher(activation_of(project)).run(**kwargs)
    except DispatcherBusy as exc:
        console.print(f"[yellow]notice:[/] {exc}", soft_wrap=True)
        return None


@click.command()
@click.option(
    "--until",
    type=click.Choice(["forever", "idle", "drained"]),
    default="forever",
    show_default=True,
    help="idle: nothing due now; drained: nothing left to send.",
)
@click.option("--max-seconds", type=float, default=None, help="Stop after this long.")
@click.option(
    "--sync-now", is_flag=True, help="Run every active audience sync first, even if up to date."
)
@pass_project
def run(project: Project, until: str, max_seconds: float | None, sync_now: bool) -> None:
    """The dispatcher: transitions -> triggers -> signed deliveries with retries (Ctrl-C stops)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    dispatcher = Dispatcher(activation_of(project))
    if sync_now:
        with dispatcher.locked():
            for r in dispatcher.sync(force=True):
                console.print(
                    f"sync {r.sync}: run {r.run} ({r.kind}) +{r.added} -{r.removed}", soft_wrap=True
                )
    last = [time.monotonic()]

    def progress(report: DispatchReport) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            err_console.print(_summary(report), soft_wrap=True)

    report = dispatcher.run(stop=stop, max_seconds=max_seconds, until=until, on_turn=progress)
    console.print(_summary(report), soft_wrap=True)


COMMANDS = [deliveries, replay, run]
