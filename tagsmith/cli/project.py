"""``tagsmith init``: create a project folder."""

from __future__ import annotations

import click

from tagsmith.cli._common import CliContext, console, user_errors
from tagsmith.project import Project


@click.command()
@click.pass_obj
@user_errors
def init(obj: CliContext) -> None:
    """Create a project in --project: tagsmith.yaml with every default, and the data folder."""
    project = Project.init(obj.project_dir)
    console.print(f"Created project in {project.root}")
    console.print(f"  config: {project.config_path}")
    console.print(f"  data:   {project.data_dir}")
    console.print(f"  tags:   {project.catalogue_dir} (the standard tag library)")
    console.print(f"  policy: {project.policy_path}")
