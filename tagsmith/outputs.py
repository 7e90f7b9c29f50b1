"""The one guard every command that writes a user-named file goes through.

A command's ``--out`` is the user's file, never one of the project's: a path inside the
project's stores (``data/``, the catalogue, the triggers folder, the config, spec,
policy and audiences files) is refused, because an export written there silently
destroys a store (hostile finding 14-1). An existing file is refused unless the user
said ``--overwrite``. The file itself is written to a temporary sibling and renamed
into place, so a failed write never leaves half a file where a good one was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tagsmith.errors import OutputPathError

if TYPE_CHECKING:
    from tagsmith.project import Project

__all__ = ["check_output", "protected_paths", "write_atomic"]


def protected_paths(project: Project) -> list[Path]:
    """The project's own files and folders: no command output may land in them."""
    return [
        p.resolve()
        for p in (
            project.data_dir,
            project.catalogue_dir,
            project.triggers_dir,
            project.config_path,
            project.feature_spec_path,
            project.policy_path,
            project.audiences_path,
        )
    ]


def check_output(
    out: Path,
    *,
    overwrite: bool,
    protected: Iterable[Path] = (),
    option: str = "--out",
    names: Iterable[str] = (),
) -> Path:
    """Refuse an output path inside ``protected`` or (without ``overwrite``) existing.

    Args:
        out: The path the user named.
        overwrite: Whether the user allowed replacing an existing file.
        protected: Project files and folders the output may not be or lie in.
        option: The option named in messages.
        names: For a folder output: the file names the command writes into it (each
            must not exist unless ``overwrite``).

    Returns:
        ``out`` resolved.

    Raises:
        OutputPathError: ``out`` is a project store, or exists and ``overwrite`` is off.
    """
    target = Path(out).expanduser().resolve()
    for store in protected:
        if target == store or store in target.parents:
            raise OutputPathError(
                f"{option}: expected a path outside the project's stores. Got {out}, "
                f"which is inside {store}; writing there would overwrite project data."
            )
    existing = [target / n for n in names] if names else [target]
    for path in existing:
        if path.is_dir() and not names:
            raise OutputPathError(f"{option}: expected a file. Got {out}, which is a folder.")
        if path.exists() and not overwrite:
            raise OutputPathError(
                f"{option}: expected a new file. Got {path}, which exists; "
                "pass --overwrite to replace it."
            )
    return target


def write_atomic(out: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``out``, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
