"""A Tagsmith project on disk: its folder, config and the paths of its stores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tags.catalogue import copy_library
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
        copy_library(project.catalogue_dir)
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

    @property
    def features_dir(self) -> Path:
        """Folder of feature snapshots (one per as-of date, written atomically)."""
        return self.data_dir / "features"

    @property
    def feature_spec_path(self) -> Path:
        """The project's feature spec; the shipped default applies when it is absent."""
        return self.root / "features.yaml"

    @property
    def catalogue_dir(self) -> Path:
        """Folder of tag catalogue YAML files (the standard library is copied here)."""
        return self.root / "catalogue"

    @property
    def catalogue_versions_dir(self) -> Path:
        """Folder of applied catalogue versions (``v0001.json``, ...)."""
        return self.data_dir / "catalogue_versions"

    @property
    def policy_path(self) -> Path:
        """The access policy (roles and what each may see)."""
        return self.root / "policy.yaml"

    @property
    def audiences_path(self) -> Path:
        """Saved audiences (name -> expression), data-like YAML."""
        return self.root / "audiences.yaml"

    @property
    def tag_store_path(self) -> Path:
        """The tag store database file."""
        return self.data_dir / "tags.duckdb"

    @property
    def audit_log_path(self) -> Path:
        """The append-only, hash-chained audit log."""
        return self.data_dir / "audit.log"

    @property
    def api_keys_path(self) -> Path:
        """API keys of the tag service (salted hashes only), readable by the owner only."""
        return self.data_dir / "api_keys.json"

    @property
    def mlflow_dir(self) -> Path:
        """Folder of the embedded MLflow store (SQLite file and artifacts)."""
        return self.data_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` when set, else the project's SQLite file (absolute)."""
        return os.environ.get("MLFLOW_TRACKING_URI") or (
            f"sqlite:///{(self.mlflow_dir / 'mlflow.db').as_posix()}"
        )

    @property
    def model_history_path(self) -> Path:
        """Append-only history of registry alias moves (MLflow keeps none)."""
        return self.data_dir / "model_history.sqlite"

    @property
    def model_locks_dir(self) -> Path:
        """Lock files serialising promotions and rollbacks, one per registered model."""
        return self.data_dir / "locks"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Artifact folder of experiments the project creates."""
        return self.mlflow_dir / "artifacts"

    @property
    def triggers_dir(self) -> Path:
        """Folder of trigger, audience sync and destination YAML files."""
        return self.root / "triggers"

    @property
    def trigger_versions_dir(self) -> Path:
        """Folder of applied trigger versions (``v0001.json``, ...)."""
        return self.data_dir / "trigger_versions"

    @property
    def outbox_path(self) -> Path:
        """The activation outbox (queued, sent and dead deliveries; cursors)."""
        return self.data_dir / "activation.sqlite"

    @property
    def activation_lock_path(self) -> Path:
        """Lock file held by the one dispatcher delivering at a time."""
        return self.data_dir / "activation.lock"
