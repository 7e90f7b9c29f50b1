"""The ``tagsmith`` command line: nouns and verbs, preview before apply.

Each ``tagsmith.cli.<noun>`` module holds its commands and imports no other command
module (shared helpers live in ``_common`` and ``_governance``); the command tree is
assembled here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import click

from tagsmith import __version__
from tagsmith.cli import audience as audience_cmds
from tagsmith.cli import audit as audit_cmds
from tagsmith.cli import customers as customers_cmds
from tagsmith.cli import delivery as delivery_cmds
from tagsmith.cli import facts as facts_cmds
from tagsmith.cli import features as features_cmds
from tagsmith.cli import generate as generate_cmds
from tagsmith.cli import govern as govern_cmds
from tagsmith.cli import models as models_cmds
from tagsmith.cli import project as project_cmds
from tagsmith.cli import serve as serve_cmds
from tagsmith.cli import store as store_cmds
from tagsmith.cli import stream as stream_cmds
from tagsmith.cli import tagdata as tagdata_cmds
from tagsmith.cli import tagrun as tagrun_cmds
from tagsmith.cli import tags as tags_cmds
from tagsmith.cli import train as train_cmds
from tagsmith.cli import triggers as triggers_cmds
from tagsmith.cli._common import CliContext, report_crash

__all__ = ["main"]


class _Boundary(click.Group):
    """The root group: any exception a command let escape becomes one line + a log file."""

    def invoke(self, ctx: click.Context) -> Any:
        # Group.invoke consumes these: keep them to name the command that failed.
        args = [*ctx._protected_args, *ctx.args]
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE or os.environ.get("TAGSMITH_DEBUG"):
                raise  # click closes a broken pipe quietly
            report_crash(_command_path(self, ctx, args), exc)
        except Exception as exc:
            if os.environ.get("TAGSMITH_DEBUG"):
                raise
            report_crash(_command_path(self, ctx, args), exc)


def _command_path(group: click.Group, ctx: click.Context, args: list[str]) -> str:
    """``tags export`` from the arguments left after the root group's options."""
    names: list[str] = []
    cmd: click.Command = group
    for arg in args:
        if not isinstance(cmd, click.Group):
            break
        sub = cmd.get_command(ctx, arg)
        if sub is None:
            continue
        names.append(arg)
        cmd = sub
    return " ".join(names) or "(no command)"


@click.group(
    cls=_Boundary,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="tagsmith")
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default="the current directory",
    envvar="TAGSMITH_PROJECT",
    help="Project folder (holds tagsmith.yaml).",
)
@click.pass_context
def main(ctx: click.Context, project_dir: Path) -> None:
    """Tagsmith: fact tags -> point-in-time features -> rule and predictive tags, served."""
    ctx.obj = CliContext(project_dir)


tags_group = click.Group(
    "tags",
    help="The tag catalogue and rule tags: validate, list, describe, plan, apply.",
    commands=[
        *tags_cmds.COMMANDS,
        tagrun_cmds.run_cmd,
        *tagdata_cmds.COMMANDS,
        *govern_cmds.COMMANDS,
    ],
)

main.add_command(project_cmds.init)
main.add_command(tags_group)
main.add_command(audience_cmds.audience)
main.add_command(customers_cmds.customers)
customers_cmds.customers.add_command(govern_cmds.erase_cmd)
customers_cmds.customers.add_command(govern_cmds.consent_group)
main.add_command(
    click.Group(
        "triggers",
        help="Act when customers enter or leave a tag: triggers, audience syncs, deliveries.",
        commands=[*triggers_cmds.COMMANDS, *delivery_cmds.COMMANDS],
    )
)
main.add_command(
    click.Group(
        "stream",
        help="Real-time tags from a NATS JetStream stream: run the consumer, publish events.",
        commands=stream_cmds.COMMANDS,
    )
)
main.add_command(tagrun_cmds.schedule_group)
main.add_command(facts_cmds.facts)
main.add_command(features_cmds.features)
main.add_command(models_cmds.models)
main.add_command(audit_cmds.audit)
main.add_command(store_cmds.store)
for _cmd in govern_cmds.STORE_COMMANDS:
    store_cmds.store.add_command(_cmd)
main.add_command(serve_cmds.serve)
main.add_command(generate_cmds.generate)
main.add_command(train_cmds.train)
main.add_command(train_cmds.evaluate)
main.add_command(train_cmds.predict)
