"""``tagsmith audit``: show and verify the hash-chained audit log."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from tagsmith.cli._common import console, emit_json, err_console, format_option, pass_project
from tagsmith.cli._governance import require, resolve_role, role_option
from tagsmith.project import Project


@click.group()
def audit() -> None:
    """The audit log: who read, exported or changed which tags, and when."""


@audit.command()
@click.option(
    "--last",
    "last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show the newest N entries.",
)
@click.option("--action", default=None, help="Only entries of this action (read, export, ...).")
@click.option(
    "--json", "as_json", is_flag=True, hidden=True, help="JSON lines (before --format json)."
)
@format_option
@role_option
@pass_project
def show(
    project: Project, last: int, action: str | None, as_json: bool, role: str | None, fmt: str
) -> None:
    """Print the newest audit entries."""
    role = resolve_role(project, role)
    require(project, role, "audit", query="audit show")
    entries = project.audit_log().entries()
    if action:
        entries = [e for e in entries if e.get("action") == action]
    entries = entries[-last:]
    if fmt == "json":
        emit_json(entries)
        return
    if as_json:
        for e in entries:
            click.echo(json.dumps(e, ensure_ascii=False, sort_keys=True))
        return
    table = Table(title=f"audit log: {project.audit_log_path}")
    for col in ("#", "when (UTC)", "actor", "role", "action", "tags", "customers", "query"):
        table.add_column(col, overflow="fold")
    for e in entries:
        tags = e.get("tags") or []
        shown = ", ".join(tags[:4]) + (f" +{len(tags) - 4}" if len(tags) > 4 else "")
        n = e.get("n_customers")
        table.add_row(
            str(e.get("seq")),
            str(e.get("ts", ""))[:19].replace("T", " "),
            str(e.get("actor")),
            str(e.get("role")),
            str(e.get("action")),
            shown,
            "" if n is None else f"{n:,}",
            str(e.get("query") or ""),
        )
    console.print(table)


@audit.command()
@role_option
@pass_project
def verify(project: Project, role: str | None) -> None:
    """Check the hash chain; exit 1 naming each edited or deleted line."""
    role = resolve_role(project, role)
    require(project, role, "audit", query="audit verify")
    log = project.audit_log()
    report = log.verify()
    if report.ok:
        console.print(f"audit log intact: {report.n_entries} entries, hash chain verified")
        return
    err_console.print(f"[bold red]audit log {log.path} is damaged:[/]")
    for line, problem in report.problems:
        err_console.print(f"  line {line}: {problem}", markup=False)
    sys.exit(1)
