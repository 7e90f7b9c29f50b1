"""A Tagsmith project on disk: its folder, its config, and the objects built from them.

:class:`Project` is the one place where a project's catalogue, feature spec, stores,
model registry, policy and audit log are constructed (like Feast's ``FeatureStore``):
every CLI command, the service wiring, the notebook and the benchmarks ask it. Each
object is built on first use and kept for the life of the :class:`Project` instance;
library packages never read ``tagsmith.yaml`` themselves.

Heavy packages are imported inside the methods that need them, so importing this
module (and so starting the CLI) does not pay for MLflow, DuckDB or the feature code.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tagsmith.config import CONFIG_FILENAME, ProjectConfig, dump_config, load_config
from tagsmith.errors import ConfigError, ProjectNotFoundError
from tagsmith.userdirs import audit_checkpoint_path, audit_key

if TYPE_CHECKING:
    from activation.outbox import Outbox
    from activation.versions import TriggerHistory
    from features.consent import ConsentBook
    from features.crypto import EncryptionKeys
    from features.live import FactsWithLive, LiveEventLog
    from features.snapshots import FeatureStore
    from features.spec import FeatureSpec
    from features.store import FactStore
    from serving.keys import ApiKeyStore
    from tags.audit import AuditLog
    from tags.catalogue import Catalogue
    from tags.policy import AccessPolicy
    from tags.review import ReviewBook
    from tags.segments import AudienceBook
    from tags.store import TagStore
    from tags.versions import CatalogueHistory
    from training.registry import ModelRegistry

__all__ = ["Project"]

T = TypeVar("T")


def _built_once(method: Callable[[Project], T]) -> Callable[[Project], T]:
    """Build the method's object on the first call; return the same object afterwards."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: Project) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = method(self)
            value: T = self._built[name]
            return value

    return wrapper


@dataclass(frozen=True)
class Project:
    """A project folder, its validated configuration and the objects built from them.

    Attributes:
        root: The project folder (absolute).
        config: The validated ``tagsmith.yaml``.
        local_owner: Loaded by the local CLI: unless ``access.cli_roles`` opts in to
            CLI roles, :meth:`policy` adds the built-in ``owner`` role the CLI acts as
            when no role is named. The service loads projects without it.
    """

    root: Path
    config: ProjectConfig
    local_owner: bool = False
    _built: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _lock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def load(cls, root: Path, *, local_owner: bool = False) -> Project:
        """Load the project in ``root`` (``local_owner``: see the class attributes).

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
        return cls(root=root, config=load_config(path), local_owner=local_owner)

    @classmethod
    def init(cls, root: Path, *, config: ProjectConfig | None = None) -> Project:
        """Create a project in ``root`` (created if missing) and return it.

        Writes ``tagsmith.yaml`` with every default, the data folder and the standard
        tag library into ``catalogue/`` and the default access policy (``policy.yaml``).

        Raises:
            ConfigError: ``root`` already holds a project.
        """
        from tags.catalogue import copy_library
        from tags.policy import write_default_policy

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
        # Every project has a policy: governed actions (promote, rollback) check it.
        write_default_policy(project.policy_path)
        if not project.audit_log_path.exists():
            # A checkpoint left by an earlier project at this path, deleted with its log,
            # would make this project's empty log look cut short: a new project starts
            # a new chain. A log that is still here keeps its checkpoint.
            audit_checkpoint_path(project.audit_log_path).unlink(missing_ok=True)
        return project

    # ------------------------------------------------------------------ built objects
    @_built_once
    def catalogue(self) -> Catalogue:
        """The tag catalogue, checked against the configured categories and event types.

        Raises:
            CatalogueError: A catalogue file is invalid (the message names file and tag).
        """
        from tags.catalogue import Catalogue

        return Catalogue.load(
            self.catalogue_dir,
            self.config.tags,
            event_types=self.config.facts.all_event_types,
        )

    @_built_once
    def encryption_keys(self) -> EncryptionKeys | None:
        """The keys of encryption at rest (``governance.encryption``), or None.

        Read from the environment variable it names, else the key file, which must be an
        absolute path outside the project folder. Once a project has stores written
        under a key (``data/encryption.json`` records its id), running without one is
        refused rather than mixing plain files in.

        Raises:
            ConfigError: The key file is inside the project or unreadable, a key is
                malformed, or the project is encrypted and no key is given.
        """
        from features.crypto import EncryptionKeys
        from features.errors import StoreError

        cfg = self.config.governance.encryption
        marker = self.data_dir / "encryption.json"
        text, source = os.environ.get(cfg.key_env), f"${cfg.key_env}"
        if not text and cfg.key_file:
            path = Path(cfg.key_file).expanduser()
            if not path.is_absolute() or path.resolve().is_relative_to(self.root):
                raise ConfigError(
                    f"{self.config_path}: key 'governance.encryption.key_file' must be an "
                    f"absolute path outside the project folder {self.root}. Got {cfg.key_file!r}."
                )
            try:
                text, source = path.read_text(encoding="utf-8"), str(path)
            except OSError as exc:
                raise ConfigError(f"Cannot read the encryption key file {path}: {exc}") from exc
        if not text:
            if marker.is_file():
                raise ConfigError(
                    f"This project's stores are encrypted ({marker}). Expected the key in "
                    f"${cfg.key_env} or governance.encryption.key_file. Got neither."
                )
            return None
        try:
            keys = EncryptionKeys.from_text(text, source=source)
        except StoreError as exc:
            raise ConfigError(str(exc)) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            marker.write_text(json.dumps({"key_id": keys.current_id}) + "\n", encoding="utf-8")
        return keys

    @_built_once
    def reviews(self) -> ReviewBook:
        """Sign-offs of review-required tags (``tagsmith tags review``)."""
        from tags.review import ReviewBook

        return ReviewBook(self.data_dir / "reviews.json")

    @_built_once
    def consent(self) -> ConsentBook:
        """Consent records per customer and purpose (``governance.consent``)."""
        from features.consent import ConsentBook

        return ConsentBook(
            self.facts_dir / "consent.parquet",
            self.config.governance.consent,
            keys=self.encryption_keys(),
            customers=lambda: self.fact_store().load_customers(),
            events=lambda: self.facts().load_events(
                columns=["customer_id", "occurred_at", "event_type", "category"]
            ),
            # No facts yet: nothing to fingerprint (the records file still counts).
            marker=lambda: self.facts().fingerprint() if self.fact_store().exists() else "",
        )

    @_built_once
    def feature_spec(self) -> FeatureSpec:
        """The project's ``features.yaml``; the shipped default spec when there is none.

        Raises:
            SpecError: ``features.yaml`` is not a file, not YAML, or breaks the schema.
        """
        from features.errors import SpecError
        from features.spec import default_spec, load_spec

        path = self.feature_spec_path
        if not path.exists():
            return default_spec()
        if not path.is_file():
            raise SpecError(f"Expected the feature spec {path} to be a YAML file. Got a folder.")
        return load_spec(path)

    @_built_once
    def fact_store(self) -> FactStore:
        """The fact store (validated customers and events, import log)."""
        from features.store import FactStore

        return FactStore(self.facts_dir, keys=self.encryption_keys())

    @_built_once
    def live_events(self) -> LiveEventLog:
        """The live event log (events sent to real-time tagging), beside the fact store."""
        from features.live import LiveEventLog

        return LiveEventLog(self.facts_dir / "live", keys=self.encryption_keys())

    def facts(self) -> FactsWithLive:
        """What batch runs read: the fact store's facts plus the live events."""
        from features.live import FactsWithLive

        return FactsWithLive(self.fact_store(), self.live_events())

    @_built_once
    def feature_store(self) -> FeatureStore:
        """The feature snapshots, one per as-of date."""
        from features.snapshots import FeatureStore

        return FeatureStore(self.features_dir, keys=self.encryption_keys())

    @_built_once
    def tag_store(self) -> TagStore:
        """The tag store (snapshots with history)."""
        from tags.store import TagStore

        return TagStore(self.tag_store_path, keys=self.encryption_keys())

    @_built_once
    def catalogue_history(self) -> CatalogueHistory:
        """Applied catalogue versions (``tags plan`` / ``tags apply``)."""
        from tags.versions import CatalogueHistory

        return CatalogueHistory(self.catalogue_versions_dir)

    @_built_once
    def audiences(self) -> AudienceBook:
        """Saved audiences (name -> expression)."""
        from tags.segments import AudienceBook

        return AudienceBook(self.audiences_path)

    @_built_once
    def policy(self) -> AccessPolicy:
        """The access policy of callers (roles and what each may see and do).

        On the local CLI (``local_owner``) of a project that has not opted in to CLI
        roles, the built-in ``owner`` role is added: whoever runs the CLI owns the
        project's files anyway, so refusing them only got in their way.

        Raises:
            PolicyError: ``policy.yaml`` is missing or invalid (the message names it).
        """
        policy = self.service_policy()
        if self.local_owner and not self.config.access.cli_roles:
            return policy.with_owner()
        return policy

    @_built_once
    def service_policy(self) -> AccessPolicy:
        """``policy.yaml`` alone, as the service and stored definitions see it.

        API keys and triggers act later, in the service or the dispatcher, where no
        built-in ``owner`` exists: their roles are checked against this.

        Raises:
            PolicyError: ``policy.yaml`` is missing or invalid (the message names it).
        """
        from tags.policy import AccessPolicy

        return AccessPolicy.load(self.policy_path)

    @_built_once
    def audit_log(self) -> AuditLog:
        """The append-only, hash-chained audit log."""
        from tags.audit import AuditLog

        # Keyed, with the key and the checkpoint outside the project (finding 14-8).
        return AuditLog(
            self.audit_log_path,
            keys=self.encryption_keys(),
            key=audit_key(),
            checkpoint=audit_checkpoint_path(self.audit_log_path),
        )

    @_built_once
    def registry(self) -> ModelRegistry:
        """The MLflow model registry with its alias history and promotion locks."""
        from training.registry import ModelRegistry

        return ModelRegistry(
            self.mlflow_tracking_uri,
            self.model_history_path,
            self.model_locks_dir,
            lock_timeout=self.config.promotion.lock_timeout_seconds,
        )

    @_built_once
    def api_keys(self) -> ApiKeyStore:
        """API keys of the tag service (salted hashes only)."""
        from serving.keys import ApiKeyStore

        return ApiKeyStore(self.api_keys_path)

    @_built_once
    def trigger_history(self) -> TriggerHistory:
        """Applied trigger, sync and destination versions (``tagsmith triggers apply``)."""
        from activation.versions import TriggerHistory

        return TriggerHistory(self.trigger_versions_dir)

    @_built_once
    def outbox(self) -> Outbox:
        """The activation outbox (queued, sent and dead deliveries; the transitions cursor)."""
        from activation.outbox import Outbox

        return Outbox(self.outbox_path)

    # ------------------------------------------------------------------ paths
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
        """``MLFLOW_TRACKING_URI`` when set, else the project's SQLite file (absolute).

        The embedded store's artifact locations are first moved into this project when
        it was copied, moved or restored elsewhere (``training.relocation``).
        """
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        self._mlflow_relocated()
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').as_posix()}"

    @_built_once
    def _mlflow_relocated(self) -> int:
        """Rows of the embedded MLflow store re-pointed at this project (once per load)."""
        from training.relocation import relocate_artifacts

        return relocate_artifacts(self.mlflow_dir / "mlflow.db", self.mlflow_artifacts_dir)

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
