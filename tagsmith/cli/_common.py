"""What every CLI command shares: the project context, error display, consoles, formats.

A helper module: it imports no command module (``tagsmith.cli.<noun>``), so the command
modules stay independent of each other (an import-linter contract checks it).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.cells import cell_len
from rich.console import Console

from tagsmith.cli._context import CliContext
from tagsmith.outputs import check_output, protected_paths
from tagsmith.project import Project
from tagsmith.userdirs import log_dir

__all__ = [
    "USER_ERRORS",
    "CliContext",
    "console",
    "day",
    "emit_json",
    "err_console",
    "format_option",
    "guard_out",
    "jsonable",
    "overwrite_option",
    "pass_project",
    "print_columns",
    "report_crash",
    "tag_list_option",
    "user_errors",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Errors a user can fix (bad input, bad config): shown as one clear message, exit code 2.
# Each package's base error is added here as the package joins the CLI. Named, not
# imported: an exception can only be an instance of a class whose module was imported,
# so :func:`user_error_types` looks them up in ``sys.modules`` when an error is caught.
# Importing them here would cost every command, its ``--help`` included, seconds
# (serving's errors subclass BentoML's exceptions).
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("tagsmith.errors", "TagsmithError"),
    ("features.errors", "FeaturesError"),
    ("tags.errors", "TagsError"),
    ("scoring.errors", "ScoringError"),
    ("training.errors", "TrainingError"),
    ("serving.errors", "ServingError"),
    ("activation.errors", "ActivationError"),
    ("streaming.errors", "StreamingError"),
    ("explain.errors", "ExplainError"),
    ("spark.errors", "SparkError"),
)


def user_error_types() -> tuple[type[Exception], ...]:
    """The base classes of :data:`USER_ERRORS` whose modules are loaded (see there)."""
    return tuple(
        getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules
    )


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Show user-fixable errors as a message and exit 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, user_error_types()):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            if os.environ.get("TAGSMITH_DEBUG"):
                raise
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def report_crash(command: str, exc: BaseException) -> NoReturn:
    """The CLI's last error boundary: one line naming ``command``, the traceback to a file.

    Any exception no package turned into a user error ends here (exit 1); the user
    sees what failed and where the details are, never the traceback itself. A
    permission or disk error names the path it concerns (exit 2: the user can fix it).
    """
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"crash-{stamp}-{os.getpid()}.log"
    log: Path | None = None
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "tagsmith-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"tagsmith {command}\n{text}", encoding="utf-8")
        except OSError:
            continue
        log = folder / name
        break
    where = f"traceback in {log}" if log else "no log written (no writable log folder)"
    if isinstance(exc, OSError) and exc.filename and exc.errno in _FIXABLE_OS_ERRORS:
        what = f"cannot write or read {exc.filename}: {exc.strerror}"
        code = 2
    else:
        first = " ".join(str(exc).split())[:300]
        what = f"failed unexpectedly ({type(exc).__name__}{': ' + first if first else ''})"
        code = 1
    err_console.print(
        f"[bold red]error:[/] tagsmith {command}: {what}; {where}", markup=True, soft_wrap=True
    )
    sys.exit(code)


# Errors a user fixes outside Tagsmith (permissions, a full disk, a read-only mount).
_FIXABLE_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def pass_project(func: F) -> F:
    """Pass the loaded :class:`Project` as the first argument, with error display."""

    @click.pass_obj
    @functools.wraps(func)
    def wrapper(obj: CliContext, *args: Any, **kwargs: Any) -> Any:
        return func(obj.project, *args, **kwargs)

    return user_errors(wrapper)  # type: ignore[return-value]


def overwrite_option(func: F) -> F:
    """``--overwrite``: allow replacing an existing output file."""
    return click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")(
        func
    )


def guard_out(project: Project, out: Path, overwrite: bool, option: str = "--out") -> Path:
    """``out`` resolved, refused inside the project's stores or existing (see outputs)."""
    return check_output(out, overwrite=overwrite, protected=protected_paths(project), option=option)


def print_columns(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as aligned plain-text columns (CJK-width aware, never truncated)."""
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell + " " * (w - cell_len(cell)) for cell, w in zip(row, widths, strict=True)]
        console.print("  ".join(cells).rstrip(), markup=False, soft_wrap=True)


def day(ts: Any) -> str:
    """``YYYY-MM-DD`` of a timestamp ('' for none)."""
    import pandas as pd  # on first use: --help never formats a date

    return "" if ts is None or pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}"


def format_option(func: F) -> F:
    """``--format text|json``, the same on every command that prints results.

    With ``json`` the command prints one JSON document on stdout (a list command an
    array of objects, every other command one object) and its messages and progress go
    to stderr, so ``tagsmith ... --format json | jq`` always parses.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, fmt: str, **kwargs: Any) -> Any:
        if fmt != "json":
            return func(*args, fmt=fmt, **kwargs)
        # rich resolves sys.stdout at print time unless a file is set: set stderr for
        # this call only, then go back to resolving (tests run many commands in one process).
        previous = console._file
        console.file = sys.stderr
        try:
            return func(*args, fmt=fmt, **kwargs)
        finally:
            console._file = previous

    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output: text for people, json (one document on stdout) for scripts.",
    )(wrapper)  # type: ignore[return-value]


def jsonable(value: Any) -> Any:
    """``value`` with pandas, numpy, dates, paths and dataclasses turned into JSON types.

    Missing values (None, NaN, NaT) become null; timestamps ISO 8601 strings.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    # Only if pandas is loaded: a value cannot be a pandas object otherwise, and a light
    # command's JSON (e.g. ``tags list``) must not pay for importing it.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict("records")]
    if pd is not None and isinstance(value, pd.Series):
        return jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if value is None or isinstance(value, bool | str):
        return value
    if pd is not None and (value is pd.NaT or value is pd.NA):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if pd is not None and isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if hasattr(value, "item") and not isinstance(value, int | float):  # numpy scalars
        return jsonable(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout (see :func:`format_option`)."""
    click.echo(json.dumps(jsonable(data), ensure_ascii=False, indent=2))


def _split_ids(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(part.strip() for item in value for part in item.split(",") if part.strip())


def tag_list_option(help_text: str) -> Callable[[F], F]:
    """``--tag ID`` (repeatable, or a comma list; ``--tags`` is the same option)."""
    return click.option(
        "--tag",
        "--tags",
        "tag_ids",
        multiple=True,
        metavar="ID[,ID...]",
        callback=_split_ids,
        help=f"{help_text} Repeat the option or give a comma list.",
    )
