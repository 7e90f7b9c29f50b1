"""``tagsmith audience select|save|run|list|delete``: customers by tag combinations."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tags.audit import default_actor
from tags.segments import Audience, select_audience
from tagsmith.cli._common import console, guard_out, overwrite_option, pass_project
from tagsmith.cli._governance import (
    check_purpose,
    consent_filter,
    make_reader,
    purpose_option,
    require,
    resolve_role,
    role_option,
)
from tagsmith.outputs import write_atomic
from tagsmith.project import Project

__all__ = ["audience"]

AS_OF = click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="Snapshot current at this date (default: the newest).",
)
OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the customers (and the tags used) to .csv or .parquet.",
)


@click.group()
def audience() -> None:
    """Select customers by combining tags, e.g. "churn_risk = 'high' and old_customer"."""


def _select(
    project: Project,
    expression: str,
    as_of: str | None,
    out: Path | None,
    role: str | None,
    purpose: str | None = None,
    overwrite: bool = False,
) -> Audience:
    if out is not None:
        purpose = check_purpose(project, purpose, what="audience export")
    reader = make_reader(project, role)
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise click.BadParameter(
            f"Expected a .csv or .parquet file. Got {out}.", param_hint="--out"
        )
    if out is not None:
        out = guard_out(project, out, overwrite)
    chosen = select_audience(
        reader, expression, as_of=as_of, action="export" if out is not None else "audience"
    )
    console.print(
        f"audience: {chosen.size:,} customers in the snapshot of {chosen.as_of:%Y-%m-%d} "
        f"(tags: {', '.join(chosen.tags)})"
    )
    if out is not None:
        frame, excluded = consent_filter(
            project, chosen.customers, purpose, role=reader.role, what=f"audience {expression}"
        )
        if excluded:
            console.print(f"left out {excluded:,} customer(s) without consent to {purpose!r}")
        if out.suffix.lower() == ".csv":
            write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False))
        else:
            write_atomic(out, lambda tmp: frame.to_parquet(tmp, index=False))
        console.print(f"written to {out}")
    elif chosen.size:
        console.print("first customers: " + ", ".join(chosen.customers["customer_id"].head(5)))
    return chosen


@audience.command()
@click.argument("expression")
@AS_OF
@OUT
@overwrite_option
@click.option(
    "--save",
    "save_as",
    default=None,
    metavar="NAME",
    help="Also save the expression under this name.",
)
@click.option("--description", default="", help="What the saved audience is for.")
@purpose_option
@role_option
@pass_project
def select(
    project: Project,
    expression: str,
    as_of: str | None,
    out: Path | None,
    overwrite: bool,
    save_as: str | None,
    description: str,
    purpose: str | None,
    role: str | None,
) -> None:
    """Select the customers for whom EXPRESSION holds; print the size."""
    _select(project, expression, as_of, out, role, purpose, overwrite)
    if save_as:
        _save(project, save_as, expression, description, replace=False, role=role)


def _save(
    project: Project,
    name: str,
    expression: str,
    description: str,
    *,
    replace: bool,
    role: str | None,
) -> None:
    role = resolve_role(project, role)
    require(project, role, "audience", query=f"audience save {name}")
    project.audiences().save(
        name,
        expression,
        project.catalogue(),
        description=description,
        actor=default_actor(),
        replace=replace,
    )
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="audience_save",
        query=expression,
        extra={"name": name},
    )
    console.print(f"saved audience {name!r}: {expression}")


@audience.command()
@click.argument("name")
@click.argument("expression")
@click.option("--description", default="", help="What the audience is for.")
@click.option("--replace", is_flag=True, help="Overwrite a saved audience of that name.")
@role_option
@pass_project
def save(
    project: Project, name: str, expression: str, description: str, replace: bool, role: str | None
) -> None:
    """Save EXPRESSION as audience NAME (checked against the catalogue)."""
    _save(project, name, expression, description, replace=replace, role=role)


@audience.command("run")
@click.argument("name")
@AS_OF
@OUT
@purpose_option
@overwrite_option
@role_option
@pass_project
def run_saved(
    project: Project,
    name: str,
    as_of: str | None,
    out: Path | None,
    purpose: str | None,
    overwrite: bool,
    role: str | None,
) -> None:
    """Re-run the saved audience NAME against a snapshot."""
    saved = project.audiences().get(name)
    console.print(f"{name}: {saved.expression}")
    _select(project, saved.expression, as_of, out, role, purpose, overwrite)


@audience.command("list")
@pass_project
def list_cmd(project: Project) -> None:
    """List saved audiences."""
    saved = project.audiences().list()
    if not saved:
        console.print("no saved audiences: tagsmith audience save NAME EXPRESSION")
        return
    table = Table(show_edge=False)
    for col in ("name", "expression", "description", "saved by", "saved at"):
        table.add_column(col, overflow="fold")
    for name, a in saved.items():
        table.add_row(name, a.expression, a.description, a.created_by, a.created_at)
    console.print(table)


@audience.command()
@click.argument("name")
@role_option
@pass_project
def delete(project: Project, name: str, role: str | None) -> None:
    """Delete the saved audience NAME."""
    role = resolve_role(project, role)
    require(project, role, "audience", query=f"audience delete {name}")
    book = project.audiences()
    expression = book.get(name).expression
    book.delete(name)
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="audience_delete",
        query=expression,
        extra={"name": name},
    )
    console.print(f"deleted audience {name!r}")
