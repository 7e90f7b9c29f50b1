"""``tagsmith serve``: the HTTP tag service and its API keys."""

from __future__ import annotations

import click
from rich.table import Table

from serving.keys import ApiKeyStore
from tagsmith.cli._common import console, err_console, pass_project
from tagsmith.project import Project


@click.group(invoke_without_command=False)
def serve() -> None:
    """The HTTP tag service (BentoML) and its API keys."""


@serve.group()
def keys() -> None:
    """API keys of the tag service: stored salted and hashed, each acting as a policy role."""


@keys.command("add")
@click.argument("name")
@click.option(
    "--role", required=True, help="Access-policy role the key acts as ('admin' may reload)."
)
@pass_project
def keys_add(project: Project, name: str, role: str) -> None:
    """Create a key called NAME; the key is printed once and never stored in clear."""
    key = ApiKeyStore(project.api_keys_path).add(name, role)
    err_console.print(
        f"Created API key {name!r} with role {role!r}. Store it now: it is shown only once."
    )
    click.echo(key)


@keys.command("list")
@pass_project
def keys_list(project: Project) -> None:
    """List stored keys (names, roles, creation time; never the keys)."""
    table = Table("name", "role", "key id", "created")
    for key in ApiKeyStore(project.api_keys_path).list_keys():
        table.add_row(key.name, key.role, key.key_id, key.created_at)
    console.print(table)


@keys.command("revoke")
@click.argument("name")
@pass_project
def keys_revoke(project: Project, name: str) -> None:
    """Delete the key called NAME (a running service refuses it from the next request)."""
    ApiKeyStore(project.api_keys_path).revoke(name)
    console.print(f"Revoked API key {name!r}.")
