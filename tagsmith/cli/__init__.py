"""The ``tagsmith`` command line: nouns and verbs, preview before apply.

Each ``tagsmith.cli.<noun>`` module holds its commands and imports no other command
module (shared helpers live in ``_common`` and ``_governance``); the command tree is
assembled here.

The tree is assembled lazily: a command module (and scikit-learn, pandas, MLflow behind
it) is imported only when its command runs, so ``tagsmith --help`` and ``--version``
start in a fraction of a second. ``LAZY_COMMANDS`` names each top-level command, where it
lives and its one-line help (a test checks that line against the command's own help). A
new top-level command joins ``LAZY_COMMANDS``; ``main.add_command`` still works but
imports eagerly (a test fails when ``--help`` imports a heavy library).
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tagsmith import __version__

__all__ = ["LAZY_COMMANDS", "LIGHT_COMMANDS", "LazyCommand", "LazyGroup", "main"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``module:attribute``) and its one-line help.

    The attribute is a click command, or a function without arguments returning one.
    ``replaced_by`` marks an old spelling kept as a hidden alias of that command path
    (e.g. ``"models train"``) that prints a deprecation hint. ``commands`` (groups only)
    names the group's visible subcommands with their one-line help, so that the group's
    ``--help`` is printed without importing it (a test checks both against the group).
    ``light`` (groups only) names subcommands that run without the heavy libraries, each
    with its own ``module:attribute``: running one imports that module alone, not the
    whole group (a test checks that it is the group's own command and stays light).
    """

    target: str
    help: str
    replaced_by: str | None = None
    commands: Mapping[str, str] | None = None
    light: Mapping[str, str] | None = None


class _DeprecatedAlias(click.Command):
    """An old spelling: the same parameters and callback, hidden, with a hint on stderr."""

    def __init__(self, name: str, target: click.Command, replaced_by: str) -> None:
        super().__init__(
            name,
            params=target.params,
            callback=target.callback,
            help=target.help,
            epilog=target.epilog,
            context_settings=target.context_settings,
            hidden=True,
        )
        self.replaced_by = replaced_by

    def invoke(self, ctx: click.Context) -> Any:
        click.echo(
            f"note: `tagsmith {self.name}` is now `tagsmith {self.replaced_by}`; "
            "the old spelling will be removed in the next release.",
            err=True,
        )
        return super().invoke(ctx)


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (see the module docstring)."""

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return self.commands.get(cmd_name)
        entry = self.lazy[cmd_name]
        if entry.replaced_by is not None:
            target = self._resolve(ctx, entry.replaced_by.split())
            command: click.Command = _DeprecatedAlias(cmd_name, target, entry.replaced_by)
        elif entry.commands is not None:
            command = _GroupStub(cmd_name, entry)
        else:
            command = _load(entry.target)
        self.commands[cmd_name] = command
        return command

    def _resolve(self, ctx: click.Context, path: list[str]) -> click.Command:
        command: click.Command | None = self
        for part in path:
            assert isinstance(command, click.Group), path
            command = command.get_command(ctx, part)
        assert command is not None, path
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but the help of a command not yet imported comes from the registry."""
        rows: list[tuple[str, str]] = []
        names = [n for n in self.list_commands(ctx) if not self._hidden(n)]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        for name in names:
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                # click's own shortening, on the registry's line
                stub = click.Command(name, help=self.lazy[name].help)
                rows.append((name, stub.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _hidden(self, name: str) -> bool:
        if name in self.commands:
            return self.commands[name].hidden
        return self.lazy[name].replaced_by is not None


def _command_rows(
    formatter: click.HelpFormatter, rows: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``(name, one-line help)`` shortened the way click shortens a command's help."""
    if not rows:
        return []
    limit = formatter.width - 6 - max(len(name) for name, _ in rows)
    return [(name, click.Command(name, help=line).get_short_help_str(limit)) for name, line in rows]


class _GroupStub(click.Group):
    """A top-level group before it is imported: its ``--help`` comes from the registry.

    ``tagsmith tags --help`` lists the group's commands from ``LazyCommand.commands``;
    resolving a command named in ``LazyCommand.light`` imports that command's module
    only; resolving any other (to run it or print its own help) imports the real group
    and hands over to it. Only groups without options of their own can be stubs.
    """

    def __init__(self, name: str, entry: LazyCommand) -> None:
        super().__init__(name, help=entry.help)
        assert entry.commands is not None, name
        self.listed = entry.commands
        self.light = dict(entry.light or {})
        self.target = entry.target
        self._real: click.Group | None = None

    def real(self) -> click.Group:
        """The group itself (imported on first use)."""
        if self._real is None:
            group = _load(self.target)
            assert isinstance(group, click.Group), self.target
            self._real = group
        return self._real

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.listed)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self._real is None and cmd_name in self.light:
            return _load(self.light[cmd_name])
        return self.real().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = _command_rows(formatter, sorted(self.listed.items()))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _load(target: str) -> click.Command:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    command = obj if isinstance(obj, click.Command) else obj()
    assert isinstance(command, click.Command), target
    return command


def tags_group() -> click.Group:
    """``tagsmith tags``: the catalogue, rule tags, tagging runs and the tag data."""
    from tagsmith.cli import catalogue, govern, tagdata, tagrun, tags

    return click.Group(
        "tags",
        help=LAZY_COMMANDS["tags"].help,
        commands=[
            *catalogue.COMMANDS,
            *tags.COMMANDS,
            tagrun.run_cmd,
            *tagdata.COMMANDS,
            *govern.COMMANDS,
        ],
    )


def triggers_group() -> click.Group:
    """``tagsmith triggers``: triggers, audience syncs and their deliveries."""
    from tagsmith.cli import delivery, triggers

    return click.Group(
        "triggers",
        help=LAZY_COMMANDS["triggers"].help,
        commands=[*triggers.COMMANDS, *delivery.COMMANDS],
    )


def stream_group() -> click.Group:
    """``tagsmith stream``: the NATS consumer and publisher."""
    from tagsmith.cli import stream

    return click.Group("stream", help=LAZY_COMMANDS["stream"].help, commands=stream.COMMANDS)


def models_group() -> click.Group:
    """``tagsmith models``: train, evaluate, predict, and the registry's versions."""
    from tagsmith.cli import models, train

    group = models.models
    group.help = LAZY_COMMANDS["models"].help
    for command in (train.train, train.evaluate, train.predict):
        group.add_command(command)
    return group


def customers_group() -> click.Group:
    """``tagsmith customers``: look up, erase, and record consent."""
    from tagsmith.cli import customers, govern

    group = customers.customers
    for command in (govern.erase_cmd, govern.consent_group):
        group.add_command(command)
    return group


def store_group() -> click.Group:
    """``tagsmith store``: backup and restore, plus the governance store commands."""
    from tagsmith.cli import govern, store

    group = store.store
    for command in govern.STORE_COMMANDS:
        group.add_command(command)
    return group


def data_group() -> click.Group:
    """``tagsmith data``: synthetic data to try the tool on."""
    from tagsmith.cli import generate

    return click.Group("data", help=LAZY_COMMANDS["data"].help, commands=[generate.generate])


LAZY_COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(
        "tagsmith.cli.project:init",
        "Create a project in --project: tagsmith.yaml with every default, and the data folder.",
    ),
    "data": LazyCommand(
        "tagsmith.cli:data_group",
        "Synthetic data: write customers, events and a truth file to try Tagsmith on.",
        commands={
            "generate": (
                "Write synthetic customers and events (the fact contract) plus a truth file."
            ),
        },
    ),
    "facts": LazyCommand(
        "tagsmith.cli.facts:facts",
        "Fact tags: import customers and events (validated, quarantined), show the store.",
        commands={
            "import": (
                "Validate files and add the rows that pass to the fact store; quarantine the rest."
            ),
            "summary": "Counts, date range, event types and the import log of the fact store.",
        },
    ),
    "features": LazyCommand(
        "tagsmith.cli.features:features",
        "Point-in-time behaviour features: build snapshots, show a customer, list them.",
        commands={
            "build": "Compute features as of each DATE and write one snapshot per date atomically.",
            "list": "Print the feature catalogue of the project's spec.",
            "show": "Print one customer's features with their units and definitions.",
        },
    ),
    "tags": LazyCommand(
        "tagsmith.cli:tags_group",
        "The tag catalogue and rule tags: validate, plan, apply, run, export, diff, report.",
        commands={
            "apply": "Record the catalogue as a new version (refused if 'plan' lists problems).",
            "backtest": (
                "What TAG_ID would have said on past dates, and how well it predicted OUTCOME."
            ),
            "describe": "Show one tag's full definition.",
            "diff": "Who entered and who left each tag value between two snapshots.",
            "evaluate": (
                "Evaluate rule and fact tags on the fact store; print value sizes (writes nothing)."
            ),
            "export": "Write a snapshot (one row per customer and tag, scores included) to a file.",
            "history": "One customer's tag values over time, with the date of each change.",
            "lint": "Tags that overlap, have near-duplicate names, or stayed empty or constant.",
            "list": "List catalogued tags (id, display name, category, source, type, status).",
            "plan": (
                "What 'apply' would record: tags added, removed or changed since the last apply."
            ),
            "report": (
                "Coverage per tag value vs the previous run, with flags; writes an HTML report."
            ),
            "review": (
                "Show a review-required tag's change (sizes, a sample), then --approve or "
                "--reject it."
            ),
            "run": "Tag every customer: features -> rule tags -> predicted tags -> one snapshot.",
            "runs": "List tagging runs: id, as-of date, status, counts, duration.",
            "transitions": (
                "Changes of one tag (e.g. lifecycle) between consecutive snapshots, with dates."
            ),
            "validate": (
                "Check every catalogue file: schema, naming rules, rule syntax and rule types."
            ),
        },
        light={
            "list": "tagsmith.cli.catalogue:list_tags",
            "describe": "tagsmith.cli.catalogue:describe",
            "plan": "tagsmith.cli.catalogue:plan",
            "apply": "tagsmith.cli.catalogue:apply",
        },
    ),
    "models": LazyCommand(
        "tagsmith.cli:models_group",
        "Predictors: train, evaluate, predict; versions, promotion behind gates, rollback.",
        commands={
            "compare": (
                "Logged metrics and parameters of two versions of NAME side by side (V: number or "
                "alias)."
            ),
            "contest": (
                "Score every producer of TAG (rule tags, baselines, models) on the same labelled "
                "window."
            ),
            "evaluate": (
                "Score a registered model on the latest labelled cutoff against the baselines."
            ),
            "history": (
                "Which version held each alias of NAME from when to when, who moved it and why."
            ),
            "list": "Every registered model with its versions and aliases.",
            "predict": "Score every customer who has bought before AS_OF with a registered model.",
            "promote": (
                "Re-score NAME's candidate and champion on the latest labelled window; promote if "
                "gates pass."
            ),
            "rollback": (
                "Point NAME's champion back at the version that held it before the current one."
            ),
            "show": "Versions of NAME: aliases, metrics, training window, who and when.",
            "train": "Train the churn or value predictor, compare it with baselines, register it.",
        },
    ),
    "audience": LazyCommand(
        "tagsmith.cli.audience:audience",
        "Select customers by combining tags, e.g. \"churn_risk = 'high' and old_customer\".",
        commands={
            "delete": "Delete the saved audience NAME.",
            "list": "List saved audiences.",
            "run": "Re-run the saved audience NAME against a snapshot.",
            "save": "Save EXPRESSION as audience NAME (checked against the catalogue).",
            "select": "Select the customers for whom EXPRESSION holds; print the size.",
        },
    ),
    "customers": LazyCommand(
        "tagsmith.cli:customers_group",
        "Look customers up: profile, tags and why each tag has its value.",
        commands={
            "consent": (
                "Customers' consent per purpose (governance.consent.purposes): import, show."
            ),
            "erase": (
                "Erase customers everywhere: facts, features, tag history, deliveries (on request)."
            ),
            "show": (
                "A customer's profile: attributes, tags you may see, and why each has its value."
            ),
        },
    ),
    "triggers": LazyCommand(
        "tagsmith.cli:triggers_group",
        "Act when customers enter or leave a tag: triggers, audience syncs, deliveries.",
        commands={
            "add": (
                "Define trigger (or audience sync) NAME in triggers/NAME.yaml; apply it to take "
                "effect."
            ),
            "apply": (
                "Record the definitions as a new version; they fire on transitions recorded from "
                "now."
            ),
            "deliveries": (
                "Delivery batches: state, attempts, last status and error; dead letters with "
                "--state dead."
            ),
            "list": "Triggers and syncs: definition, applied version, deliveries per state.",
            "plan": (
                "What apply would record: added, removed, changed; problems refuse it (exit 1)."
            ),
            "replay": "Send dead letters again: same body, same idempotency keys, attempts reset.",
            "run": (
                "The dispatcher: transitions -> triggers -> signed deliveries with retries "
                "(Ctrl-C stops)."
            ),
            "test": "Dry-run NAME from triggers/*.yaml on recorded transitions; nothing is queued.",
        },
    ),
    "stream": LazyCommand(
        "tagsmith.cli:stream_group",
        "Real-time tags from a NATS JetStream stream: run the consumer, publish events.",
        commands={
            "publish": (
                "Publish events from a JSON-lines file (one event object per line) to the stream."
            ),
            "run": "Consume events from a NATS JetStream stream and tag them in real time.",
        },
    ),
    "serve": LazyCommand(
        "tagsmith.cli.serve:serve",
        "Start the HTTP tag service (BentoML) on the project, or manage its API keys.",
    ),
    "schedule": LazyCommand(
        "tagsmith.cli.tagrun:schedule_group",
        "Scheduled refresh: run tagging when the tags' 'refresh' says it is due.",
        commands={
            "run": (
                "Run tagging if it is due (with --loop, every time it comes due); else say when."
            ),
            "status": "When the next tagging run is due (and, with --crontab, a line for cron).",
        },
    ),
    "audit": LazyCommand(
        "tagsmith.cli.audit:audit",
        "The audit log: who read, exported or changed which tags, and when.",
        commands={
            "show": "Print the newest audit entries.",
            "verify": "Check the hash chain; exit 1 naming each edited or deleted line.",
        },
    ),
    "store": LazyCommand(
        "tagsmith.cli:store_group",
        "Back up and restore the project's stores (tags, facts, features, models, audit).",
        commands={
            "backup": "Copy every store into DEST with a manifest of sha256 checksums.",
            "encrypt": (
                "Rewrite every store under the current key (first encryption, or key rotation)."
            ),
            "encryption": "Whether each store is encrypted at rest, and under which key.",
            "new-key": (
                "Print a new random 256-bit key for encryption at rest (store it outside the "
                "project)."
            ),
            "restore": "Verify the backup in SRC, then (with --yes) put every store back.",
        },
    ),
    # Old spellings (top-level verbs), kept for one release.
    "train": LazyCommand("", "", replaced_by="models train"),
    "evaluate": LazyCommand("", "", replaced_by="models evaluate"),
    "predict": LazyCommand("", "", replaced_by="models predict"),
    "generate": LazyCommand("", "", replaced_by="data generate"),
}

# Commands that need none of the heavy libraries: they read the config, the catalogue,
# the feature spec, the audit log or the key file, never the data. A test runs each on a
# new project and fails when it imports pandas, NumPy, DuckDB, MLflow...;
# benchmarks/cli_startup.py times them against the 0.5 s target. (`init` runs on a new
# folder; the others on a project `init` made.)
LIGHT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("init",),
    ("tags", "list"),
    ("tags", "describe", "lifecycle_stage"),
    ("tags", "plan"),
    ("features", "list"),
    ("audience", "list"),
    ("audit", "show"),
    ("audit", "verify"),
    ("serve", "keys", "list"),
)


class _Boundary(LazyGroup):
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
            _report_crash(_command_path(self, ctx, args), exc)
        except Exception as exc:
            if os.environ.get("TAGSMITH_DEBUG"):
                raise
            _report_crash(_command_path(self, ctx, args), exc)


def _report_crash(command: str, exc: BaseException) -> None:
    # Imported here: _common pulls in the project and pandas, which --help never needs.
    from tagsmith.cli._common import report_crash

    report_crash(command, exc)


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
    lazy=LAZY_COMMANDS,
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
    from tagsmith.cli._context import CliContext

    ctx.obj = CliContext(project_dir)
