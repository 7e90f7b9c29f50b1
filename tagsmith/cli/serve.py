"""``tagsmith serve``: the HTTP tag service and its API keys."""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType

import click
from rich.table import Table

from tagsmith.cli._common import (
    CliContext,
    console,
    emit_json,
    err_console,
    format_option,
    pass_project,
    user_errors,
)
from tagsmith.project import Project


def _serving_error(message: str) -> Exception:
    """A ``serving`` error, its class imported only when one is raised.

    ``serving.errors`` imports BentoML, which ``serve --help`` and ``serve keys`` never need.
    """
    from serving.errors import ServingError

    return ServingError(message)


@click.group(invoke_without_command=True)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="HTTP port (default: serving.port in tagsmith.yaml, 3000).",
)
@click.option("--host", default=None, help="Interface to bind (default: serving.host, 127.0.0.1).")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, resolve_path=True),
    default=None,
    help="PEM certificate: serve HTTPS only (default: serving.tls_cert).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, resolve_path=True),
    default=None,
    help="PEM private key of --tls-cert (default: serving.tls_key).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    port: int | None,
    host: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Start the HTTP tag service (BentoML) on the project, or manage its API keys.

    Endpoints: POST /tags, POST /score, GET /catalog, GET /models, POST /admin/reload,
    plus /livez, /readyz, /metrics and the OpenAPI spec at /docs.json, and the web
    console at /ui (sign in with an API key). Stop with Ctrl-C or SIGTERM.
    """
    if ctx.invoked_subcommand is not None:
        return
    _run_server(ctx.obj, port, host, tls_cert, tls_key)


@user_errors
def _run_server(
    obj: CliContext, port: int | None, host: str | None, tls_cert: str | None, tls_key: str | None
) -> None:
    from tagsmith.app import SERVICE, service_env

    project = obj.project
    cfg = project.config.serving
    port = port or cfg.port
    host = host or cfg.host
    if not project.api_keys().list_keys():
        err_console.print(
            "note: no API keys yet, so every request will get 401: create one with "
            "'tagsmith serve keys add NAME --role ROLE'."
        )
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if (tls_cert is None) != (tls_key is None):
        raise _serving_error("Expected --tls-cert and --tls-key together. Got only one of them.")
    env = service_env(project)
    if tls_cert and tls_key:
        # The service reads its settings from the environment (serving.settings).
        env.update({"TAGSMITH_TLS_CERT": tls_cert, "TAGSMITH_TLS_KEY": tls_key})
    scheme = "https" if (tls_cert or cfg.tls_cert or env.get("TAGSMITH_TLS_CERT")) else "http"
    err_console.print(f"Serving {project.root} on {scheme}://{host}:{port} (Ctrl-C stops)")
    process = subprocess.Popen(argv, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = process.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise _serving_error(f"The tag service exited with status {code} (see the log above).")


@serve.command("build")
@click.option(
    "--version", "bento_version", default=None, help="Bento version (default: generated)."
)
@format_option
@pass_project
def build(project: Project, bento_version: str | None, fmt: str) -> None:
    """Pack the tag service as a Bento (bentofile.yaml; offline, no container).

    The Bento holds the code and the pinned requirements, not the project: mount the
    project where TAGSMITH_PROJECT points (/project by default) when it runs, e.g.
    'bentoml containerize TAG' then 'docker run -v $PWD/shop:/project ...'.
    """
    from tagsmith.bento import build_bento

    err_console.print("Building the Bento (bentoml build; about a minute)...")
    built = build_bento(project, version=bento_version)
    if fmt == "json":
        emit_json({"tag": built.tag, "bentoml_home": str(built.home), "path": str(built.path)})
        return
    console.print(f"Built Bento {built.tag} in {built.path}")
    console.print(
        f"  serve it:     TAGSMITH_PROJECT={project.root} BENTOML_HOME={built.home} "
        f"bentoml serve {built.tag}\n"
        f"  containerize: BENTOML_HOME={built.home} bentoml containerize {built.tag} "
        "(the image reads the project mounted at /project)"
    )


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
    if project.policy_path.exists():
        # The roles the service knows: it has no built-in owner.
        roles = project.service_policy().roles
        if role not in roles:
            raise _serving_error(
                f"Expected a role of the access policy {sorted(roles)} "
                f"({project.policy_path}). Got {role!r}."
            )
    key = project.api_keys().add(name, role)
    err_console.print(
        f"Created API key {name!r} with role {role!r}. Store it now: it is shown only once."
    )
    click.echo(key)


@keys.command("list")
@format_option
@pass_project
def keys_list(project: Project, fmt: str) -> None:
    """List stored keys (names, roles, creation time; never the keys)."""
    if fmt == "json":
        keys = project.api_keys().list_keys()
        emit_json(
            [
                {"name": k.name, "role": k.role, "key_id": k.key_id, "created": k.created_at}
                for k in keys
            ]
        )
        return
    table = Table("name", "role", "key id", "created")
    for key in project.api_keys().list_keys():
        table.add_row(key.name, key.role, key.key_id, key.created_at)
    console.print(table)


@keys.command("revoke")
@click.argument("name")
@pass_project
def keys_revoke(project: Project, name: str) -> None:
    """Delete the key called NAME (a running service refuses it from the next request)."""
    project.api_keys().revoke(name)
    console.print(f"Revoked API key {name!r}.")
