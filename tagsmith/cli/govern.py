"""``tagsmith tags lint``: redundant and dead tags, with suggested merges.

Joins the ``tags`` group assembled in :mod:`tagsmith.cli`.
"""

from __future__ import annotations

import json

import click

from tagsmith.cli._common import console, pass_project, print_columns
from tagsmith.cli._governance import lint_findings
from tagsmith.project import Project

__all__ = ["COMMANDS"]


@click.command("lint")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format (json for scripts).",
)
@click.option("--strict", is_flag=True, help="Exit 1 when anything is found (for CI).")
@pass_project
def lint_cmd(project: Project, fmt: str, strict: bool) -> None:
    """Tags that overlap, have near-duplicate names, or stayed empty or constant.

    Overlap is the Jaccard of two tag values' customers in each of the last
    ``governance.lint.runs`` snapshots; names are compared within a category once the
    category prefix is removed. Thresholds: ``governance.lint`` in tagsmith.yaml.
    """
    findings = lint_findings(project)
    cfg = project.config.governance.lint
    if fmt == "json":
        click.echo(json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=2))
    elif not findings:
        console.print(
            f"No redundant or dead tags (Jaccard < {cfg.jaccard:g}, name similarity < "
            f"{cfg.name_similarity:g}, nothing empty or constant for {cfg.runs} runs).",
            soft_wrap=True,
        )
    else:
        rows = [("kind", "tags", "score", "finding", "suggestion")]
        rows += [
            (f.kind, " ~ ".join(f.tags), f"{f.score:.3g}", f.detail, f.suggestion) for f in findings
        ]
        print_columns(rows)
        console.print(f"{len(findings)} finding(s)")
    if strict and findings:
        raise SystemExit(1)


COMMANDS = [lint_cmd]
