"""A Tagsmith project on disk: its folder, config and the paths of its stores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tagsmith.config import CONFIG_FILENAME, ProjectConfig, dump_config, load_config
from tagsmith.errors import ConfigError, ProjectNotFoundError

__all__ = ["Project"]


@dataclass(frozen=True)
class Project:
    """A project folder and its validated configuration.

    Attributes:
        root: The project folder (absolute).
        config: The validated ``tagsmith.yaml``.
    """

    root: Path
    config: ProjectConfig

    @classmethod
    def load(cls, root: Path) -> Project:
        """Load the project in ``root``.

        Raises:
            ProjectNotFoundError: ``root`` holds no ``tagsmith.yaml``.
            ConfigError: The config is invalid.
        """
        root = root.resolve()
        path = root / CONFIG_FILENAME
        if not path.is_file():
            raise ProjectNotFoundError(
                f"Expected a Tagsmith project in {root} (a {CONFIG_FILENAME} file). "
                "Got none: run 'tagsmith init' there, or pass --project DIR."
            )
        return cls(root=root, config=load_config(path))

    @classmethod
    def init(cls, root: Path, *, config: ProjectConfig | None = None) -> Project:
        """Create a project in ``root`` (created if missing) and return it.

        Raises:
            ConfigError: ``root`` already holds a project.
        """
        root = root.resolve()
        path = root / CONFIG_FILENAME
        if path.exists():
            raise ConfigError(f"Expected no project in {root}. Got an existing {path}.")
        config = config or ProjectConfig()
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root=root, config=config)
        project.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_config(config), encoding="utf-8")
        return project

    @property
    def config_path(self) -> Path:
        """The project's ``tagsmith.yaml``."""
        return self.root / CONFIG_FILENAME

    @property
    def data_dir(self) -> Path:
        """Folder of every store (facts, features, tags, MLflow, audit)."""
        return (self.root / self.config.data_dir).resolve()

    @property
    def facts_dir(self) -> Path:
        """Folder of the fact store (validated customers and events, import log)."""
        return self.data_dir / "facts"

    @property
    def quarantine_dir(self) -> Path:
        """Folder of quarantine files (rejected rows with reasons)."""
        return self.data_dir / "quarantine"
