"""The object every command receives: the ``--project`` folder, the project loaded once.

Its own module, light on purpose: the root group builds it before any subcommand's
``--help`` is printed, so importing it must not import the project, pandas or rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tagsmith.project import Project

__all__ = ["CliContext"]


class CliContext:
    """State shared by commands: where the project is, loaded on first use."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        """The project in ``--project`` (loaded once)."""
        if self._project is None:
            from tagsmith.project import Project  # on first use (see the module docstring)

            self._project = Project.load(self.project_dir, local_owner=True)
        return self._project
