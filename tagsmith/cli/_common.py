"""What every CLI command shares: the project context, error display, consoles, formats.

A helper module: it imports no command module (``tagsmith.cli.<noun>``), so the command
modules stay independent of each other (an import-linter contract checks it).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import pandas as pd
from rich.cells import cell_len
from rich.console import Console

from activation.errors import ActivationError
from explain.errors import ExplainError
from features.errors import FeaturesError
from scoring.errors import ScoringError
from serving.errors import ServingError
from streaming.errors import StreamingError
from tags.errors import TagsError
from tagsmith.errors import TagsmithError
from tagsmith.outputs import check_output, protected_paths
from tagsmith.project import Project
from tagsmith.userdirs import log_dir
from training.errors import TrainingError

__all__ = [
    "USER_ERRORS",
    "CliContext",
    "console",
    "day",
    "err_console",
    "guard_out",
    "overwrite_option",
    "pass_project",
    "print_columns",
    "report_crash",
    "user_errors",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Errors a user can fix (bad input, bad config): shown as one clear message, exit code 2.
# Each package's base error is added here as the package joins the CLI.
USER_ERRORS: tuple[type[Exception], ...] = (
    TagsmithError,
    FeaturesError,
    TagsError,
    ScoringError,
    TrainingError,
    ServingError,
    ActivationError,
    StreamingError,
    ExplainError,
)

F = TypeVar("F", bound=Callable[..., Any])


class CliContext:
    """State shared by commands: where the project is, loaded on first use."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        """The project in ``--project`` (loaded once)."""
        if self._project is None:
            self._project = Project.load(self.project_dir)
        return self._project


def user_errors(func: F) -> F:
    """Show user-fixable errors as a message and exit 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
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
    return "" if ts is None or pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}"
