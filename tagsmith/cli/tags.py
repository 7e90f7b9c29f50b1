"""``tagsmith tags ...``: the tag catalogue and rule tags.

The ``tags`` group is exported so other modules can add commands to it
(``tags.add_command(...)`` or ``@tags.command()``); :func:`load_catalogue` loads the
project's catalogue the way every tags command does.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import UTC, datetime

import click
from rich.cells import cell_len

from tags.audit import default_actor
from tags.catalogue import Catalogue
from tags.versions import CatalogueHistory
from tagsmith.cli._common import console, pass_project
from tagsmith.cli._governance import audit_log, resolve_role
from tagsmith.project import Project

__all__ = ["load_catalogue", "print_columns", "tags"]


def load_catalogue(project: Project) -> Catalogue:
    """The project's catalogue, checked against its categories and event types."""
    return Catalogue.load(
        project.catalogue_dir,
        project.config.tags,
        event_types=project.config.facts.all_event_types,
    )


def print_columns(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as aligned plain-text columns (CJK-width aware, never truncated)."""
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell + " " * (w - cell_len(cell)) for cell, w in zip(row, widths, strict=True)]
        console.print("  ".join(cells).rstrip(), markup=False, soft_wrap=True)


@click.group()
def tags() -> None:
    """The tag catalogue and rule tags: validate, list, describe, plan, apply."""


@tags.command()
@pass_project
def validate(project: Project) -> None:
    """Check every catalogue file: schema, naming rules and rule syntax."""
    catalogue = load_catalogue(project)
    counts: dict[str, int] = {}
    for tag in catalogue:
        counts[tag.status] = counts.get(tag.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(
        f"Catalogue OK: {len(catalogue)} tags ({summary or 'none'}) in {project.catalogue_dir}"
    )


@tags.command("list")
@click.option("--category", "-c", default=None, help="Only tags of this category.")
@click.option(
    "--status",
    type=click.Choice(["draft", "active", "deprecated"]),
    default=None,
    help="Only tags with this status.",
)
@pass_project
def list_tags(project: Project, category: str | None, status: str | None) -> None:
    """List catalogued tags (id, display name, category, source, type, status)."""
    catalogue = load_catalogue(project)
    chosen = catalogue.by_category(category) if category else list(catalogue)
    if status:
        chosen = [t for t in chosen if t.status == status]
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


@tags.command()
@click.argument("tag_id")
@pass_project
def describe(project: Project, tag_id: str) -> None:
    """Show one tag's full definition."""
    catalogue = load_catalogue(project)
    tag = catalogue.get(tag_id)
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


@tags.command()
@pass_project
def plan(project: Project) -> None:
    """What 'apply' would record: tags added, removed or changed since the last apply."""
    catalogue = load_catalogue(project)
    result = CatalogueHistory(project.catalogue_versions_dir).plan(catalogue)
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


@tags.command()
@pass_project
def apply(project: Project) -> None:
    """Record the catalogue as a new version (refused if 'plan' lists problems)."""
    catalogue = load_catalogue(project)
    history = CatalogueHistory(project.catalogue_versions_dir)
    before = history.versions()
    changes = history.plan(catalogue).changes
    version = history.apply(catalogue, applied_at=datetime.now(UTC), applied_by=getpass.getuser())
    if before and version == before[-1]:
        console.print(f"No changes: catalogue version {version} is current.")
    else:
        console.print(f"Applied catalogue version {version} ({len(catalogue)} tags).")
        audit_log(project).append(
            actor=default_actor(),
            role=resolve_role(project, None),
            action="catalogue",
            tags=[c.tag_id for c in changes],
            query=f"tags apply -> catalogue version {version}",
            extra={"changes": [c.describe() for c in changes]},
        )
