"""``tagsmith customers show ID``: one customer's profile, every visible tag with its why."""

from __future__ import annotations

import json

import click

from tagsmith.cli._common import console, pass_project
from tagsmith.cli._governance import make_reader, role_option
from tagsmith.explaining import customer_explainer, hash_customer_ids
from tagsmith.project import Project

__all__ = ["customers"]


@click.group()
def customers() -> None:
    """Look customers up: profile, tags and why each tag has its value."""


@customers.command("show")
@click.argument("customer_id")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="Snapshot current at this date (default: the newest).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format (json for scripts).",
)
@role_option
@pass_project
def show(project: Project, customer_id: str, as_of: str | None, fmt: str, role: str | None) -> None:
    """A customer's profile: attributes, tags you may see, and why each has its value.

    Rule tags show each clause with the customer's feature values and the population
    thresholds of that date; fact tags their source; predicted tags their model
    version and score.
    """
    from explain.render import profile_lines

    reader = make_reader(project, role)
    query = json.dumps(
        {"customers_show": hash_customer_ids(project, [customer_id]), "as_of": as_of},
        sort_keys=True,
    )
    allowed = reader.authorise("read", None, query)
    profile = customer_explainer(project).profile(customer_id, visible_tags=allowed, as_of=as_of)
    reader.record(
        "read",
        tags=[t.tag_id for t in profile.tags],
        n_customers=1,
        query=query,
        extra={"explain": True, "as_of": profile.as_of},
    )
    if fmt == "json":
        click.echo(json.dumps(profile.to_json(), ensure_ascii=False, indent=2))
        return
    for line in profile_lines(profile):
        console.print(line, markup=False, soft_wrap=True, highlight=False)
