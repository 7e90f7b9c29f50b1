"""``tagsmith tags list|describe|plan|apply``: the catalogue, without reading any data.

These commands need the catalogue files, the applied versions, reviews and the audit
log only, so this module imports no array library or store and they start in a
fraction of a second (``tests/tagsmith/test_cli_startup.py`` checks it). They join the
``tags`` group in :mod:`tagsmith.cli`, which names them in ``LazyCommand.light`` so that
running one imports this module alone.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click

from tags.audit import default_actor
from tagsmith.cli._common import console, emit_json, format_option, pass_project, print_columns
from tagsmith.cli._governance import resolve_role
from tagsmith.project import Project

__all__ = ["COMMANDS"]


@click.command("list")
@click.option("--category", "-c", default=None, help="Only tags of this category.")
@click.option(
    "--status",
    type=click.Choice(["draft", "active", "deprecated"]),
    default=None,
    help="Only tags with this status.",
)
@format_option
@pass_project
def list_tags(project: Project, category: str | None, status: str | None, fmt: str) -> None:
    """List catalogued tags (id, display name, category, source, type, status)."""
    catalogue = project.catalogue()
    chosen = catalogue.by_category(category) if category else list(catalogue)
    if status:
        chosen = [t for t in chosen if t.status == status]
    if fmt == "json":
        keys = ("id", "display_name", "category", "source", "value_type", "sensitivity")
        emit_json(
            [
                {**{k: getattr(t, k) for k in keys}, "status": t.status, "version": t.version}
                for t in chosen
            ]
        )
        return
    header = ("id", "display name", "category", "source", "type", "sensitivity", "status")
    rows = [header] + [
        (
            tag.id,
            tag.display_name,
            tag.category,
            tag.source,
            tag.value_type,
            tag.sensitivity,
            f"{tag.status} v{tag.version}",
        )
        for tag in chosen
    ]
    print_columns(rows)
    console.print(f"{len(chosen)} tag(s)")


@click.command()
@click.argument("tag_id")
@format_option
@pass_project
def describe(project: Project, tag_id: str, fmt: str) -> None:
    """Show one tag's full definition."""
    catalogue = project.catalogue()
    tag = catalogue.get(tag_id)
    if fmt == "json":
        emit_json({**tag.model_dump(mode="json"), "file": catalogue.files.get(tag.id)})
        return
    console.print(f"[bold]{tag.id}[/]  {tag.display_name}")
    console.print(f"  file:        {catalogue.files.get(tag.id)}")
    for label, value in (
        ("category", tag.category),
        ("description", tag.description),
        ("owner", tag.owner),
        ("source", tag.source + (f" ({tag.model})" if tag.model else "")),
        ("value type", tag.value_type),
        ("sensitivity", tag.sensitivity),
        ("refresh", tag.refresh),
        ("status", f"{tag.status}, version {tag.version}"),
    ):
        console.print(f"  {label + ':':<12} {value}", markup=False)
    if tag.values:
        console.print("  values:")
        for v in tag.values:
            console.print(f"    {v.id:<22} {v.name}", markup=False)
    if tag.open_values:
        console.print("  values:      open (taken from the data)")
    if tag.bands:
        console.print("  bands:")
        for b in tag.bands:
            limit = f">= {b.min:g}" if b.min is not None else "rest"
            console.print(f"    {b.value:<10} {limit:<10} {b.name}", markup=False)
    if tag.rule is not None:
        console.print("  rule:")
        for part, text in tag.rule.expressions():
            console.print(f"    {part}: {text}", markup=False)
        if tag.rule.else_:
            console.print(f"    else: {tag.rule.else_}", markup=False)


@click.command()
@pass_project
def plan(project: Project) -> None:
    """What 'apply' would record: tags added, removed or changed since the last apply."""
    catalogue = project.catalogue()
    result = project.catalogue_history().plan(catalogue, approvals=project.reviews().approvals())
    base = f"version {result.base_version}" if result.base_version else "nothing applied yet"
    if result.empty:
        console.print(f"No changes against the last applied catalogue ({base}).")
        return
    console.print(f"Changes against {base}:")
    for change in result.changes:
        console.print(f"  {change.describe()}", markup=False, soft_wrap=True)
    if result.problems:
        console.print("[bold red]apply would be refused:[/]")
        for problem in result.problems:
            console.print(f"  {problem}", markup=False, soft_wrap=True)
        raise SystemExit(1)


@click.command()
@pass_project
def apply(project: Project) -> None:
    """Record the catalogue as a new version (refused if 'plan' lists problems)."""
    catalogue = project.catalogue()
    history = project.catalogue_history()
    before = history.versions()
    approvals = project.reviews().approvals()
    changes = history.plan(catalogue, approvals=approvals).changes
    version = history.apply(
        catalogue, applied_at=datetime.now(UTC), applied_by=getpass.getuser(), approvals=approvals
    )
    if before and version == before[-1]:
        console.print(f"No changes: catalogue version {version} is current.")
    else:
        console.print(f"Applied catalogue version {version} ({len(catalogue)} tags).")
        project.audit_log().append(
            actor=default_actor(),
            role=resolve_role(project, None),
            action="catalogue",
            tags=[c.tag_id for c in changes],
            query=f"tags apply -> catalogue version {version}",
            extra={"changes": [c.describe() for c in changes]},
        )


COMMANDS = [list_tags, describe, plan, apply]
