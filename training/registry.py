"""The MLflow model registry as ops see it: versions, aliases, lineage, safe alias moves.

``ModelRegistry`` wraps ``MlflowClient`` for one tracking URI and adds what MLflow
lacks: a durable alias history (:class:`training.alias_history.AliasHistory`), a
per-model file lock with compare-and-set alias moves, and loading a version together
with its model contract so it can be smoke-tested and re-scored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from scoring.contract import REGISTERED_MODEL_NAMES, ModelContract
from scoring.loading import ScoringModel, load_model, mlflow_uris
from training.alias_history import AliasEvent, AliasHistory
from training.errors import ModelLoadError, PromotionConflict, RegistryError

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LoadedModel",
    "ModelRegistry",
    "ModelSummary",
    "VersionInfo",
    "task_of",
]

CHAMPION = "champion"
CHALLENGER = "challenger"

# Run parameters that describe the training window, shown by `models show`.
_WINDOW_KEYS = ("cutoff", "horizon", "window", "train_start", "train_end", "as_of")

# Registered names of the two predictors (the contract between training and serving).
_TASK_BY_NAME = {name: task for task, name in REGISTERED_MODEL_NAMES.items()}


def task_of(name: str, target: str | None = None) -> str:
    """'churn' or 'value' for a registered model, from its contract's target or its name.

    Raises:
        RegistryError: Neither the target nor the name says which.
    """
    if target in ("churn", "value"):
        return str(target)
    if name in _TASK_BY_NAME:
        return _TASK_BY_NAME[name]
    raise RegistryError(
        f"Expected a churn or value model (contract target 'churn'/'value', or a name in "
        f"{sorted(_TASK_BY_NAME)}). Got '{name}' with target {target!r}."
    )


@dataclass(frozen=True)
class ModelSummary:
    """One registered model, for ``models list``."""

    name: str
    n_versions: int
    latest_version: str | None
    aliases: dict[str, str]
    updated_at: datetime | None
    description: str


@dataclass(frozen=True)
class VersionInfo:
    """One registered version with its lineage, for ``models show`` and ``compare``.

    Attributes:
        name: Registered model name.
        version: Version number (as MLflow spells it, a string).
        aliases: Aliases pointing to it.
        created_at: When it was registered.
        user: Who trained it (the run's user), when known.
        run_id: The training run.
        status: MLflow's registration status.
        metrics: Logged metrics (run and logged model).
        params: Run parameters.
        tags: Version tags.
        source: Artifact location.
    """

    name: str
    version: str
    aliases: list[str]
    created_at: datetime | None
    user: str | None
    run_id: str | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def training_window(self) -> dict[str, str]:
        """The run parameters that describe the training window (cutoffs, horizon)."""
        return {
            k: v
            for k, v in sorted(self.params.items())
            # config_* echo the settings; the resolved values are logged without prefix.
            if any(key in k.lower() for key in _WINDOW_KEYS) and not k.startswith("config_")
        }


def _ms_to_dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded with its model contract, ready to score features.

    Attributes:
        name: Registered model name.
        version: Version.
        task: 'churn' or 'value'.
        scoring: The booster and its contract (``scoring.loading.ScoringModel``).
    """

    name: str
    version: str
    task: str
    scoring: ScoringModel

    @property
    def label(self) -> str:
        """'churn-predictor/3'."""
        return f"{self.name}/{self.version}"

    @property
    def contract(self) -> ModelContract:
        """The model contract the version was trained with."""
        return self.scoring.contract

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Scores for each row (churn probability or predicted value), as serving scores."""
        return self.scoring.score(features)

    def smoke_test(self, features: pd.DataFrame) -> None:
        """Predict a few rows and check the output is usable.

        Raises:
            ModelLoadError: Prediction fails, has the wrong length, is not finite, or
                (churn) falls outside [0, 1].
        """
        try:
            scores = self.predict(features)
        except Exception as exc:
            raise ModelLoadError(
                f"Expected {self.label} to predict {len(features)} rows. Got an error: {exc}"
            ) from exc
        if scores.shape != (len(features),):
            raise ModelLoadError(
                f"Expected {len(features)} scores from {self.label}. Got shape {scores.shape}."
            )
        if not np.all(np.isfinite(scores)):
            raise ModelLoadError(
                f"Expected finite scores from {self.label}. "
                f"Got {int((~np.isfinite(scores)).sum())} NaN/inf of {len(scores)}."
            )
        if self.task == "churn" and len(scores) and (scores.min() < 0 or scores.max() > 1):
            raise ModelLoadError(
                f"Expected churn probabilities in [0, 1] from {self.label}. "
                f"Got [{scores.min():.4g}, {scores.max():.4g}]."
            )


class ModelRegistry:
    """Registered models of one MLflow tracking URI, with alias history and locks.

    Args:
        tracking_uri: MLflow tracking (and registry) URI.
        history_path: SQLite file of the alias history.
        lock_dir: Folder of the per-model lock files.
        lock_timeout: Seconds to wait for another promotion of the same model.
    """

    def __init__(
        self,
        tracking_uri: str,
        history_path: Path,
        lock_dir: Path,
        *,
        lock_timeout: float = 5.0,
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.history = AliasHistory(history_path)
        self.lock_dir = Path(lock_dir)
        self.lock_timeout = lock_timeout
        self._locks: dict[str, FileLock] = {}
        self._locks_guard = threading.Lock()

    # ----------------------------------------------------------------- reading
    def list_models(self) -> list[ModelSummary]:
        """Every registered model, by name."""
        out = []
        for rm in self._paged(self.client.search_registered_models):
            versions = self._versions(rm.name)
            latest = max((int(v.version) for v in versions), default=None)
            out.append(
                ModelSummary(
                    name=rm.name,
                    n_versions=len(versions),
                    latest_version=None if latest is None else str(latest),
                    aliases={a: str(v) for a, v in (rm.aliases or {}).items()},
                    updated_at=_ms_to_dt(rm.last_updated_timestamp),
                    description=rm.description or "",
                )
            )
        return sorted(out, key=lambda m: m.name)

    def _paged(self, search: Any, **kwargs: Any) -> list[Any]:
        items: list[Any] = []
        token = None
        while True:
            page = search(page_token=token, **kwargs)
            items.extend(page)
            token = page.token
            if not token:
                return items

    def _versions(self, name: str) -> list[Any]:
        return list(self.client.search_model_versions(f"name = '{_quote(name)}'"))

    def aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of ``name``.

        Raises:
            RegistryError: No such registered model.
        """
        # MLflow returns versions as ints here, strings elsewhere: normalise to str.
        return {a: str(v) for a, v in (self._registered(name).aliases or {}).items()}

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            known = [m.name for m in self._paged(self.client.search_registered_models)]
            raise RegistryError(
                f"Expected a registered model named '{name}' in {self.tracking_uri}. "
                f"Got none; registered: {known or 'nothing yet (run tagsmith train)'}."
            ) from exc

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points to, or None when it is unset."""
        return self.aliases(name).get(alias)

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name`` with its lineage, newest first."""
        self._registered(name)
        aliases = self.aliases(name)
        infos = [self._info(mv, aliases) for mv in self._versions(name)]
        return sorted(infos, key=lambda i: int(i.version), reverse=True)

    def version(self, name: str, ref: str) -> VersionInfo:
        """One version, by number or alias (``3``, ``champion``, ``@challenger``).

        Raises:
            RegistryError: No such model, version or alias.
        """
        version = self.resolve(name, ref)
        return self._info(self.client.get_model_version(name, version), self.aliases(name))

    def resolve(self, name: str, ref: str) -> str:
        """The version number ``ref`` (a number or an alias) designates.

        Raises:
            RegistryError: The alias is unset or the version does not exist.
        """
        from mlflow.exceptions import MlflowException

        aliases = self.aliases(name)
        ref = ref.lstrip("@")
        if not ref.isdigit():
            if ref not in aliases:
                raise RegistryError(
                    f"Expected '{ref}' to be a version number or an alias of '{name}'. "
                    f"Got neither; aliases set: {aliases or 'none'}."
                )
            return aliases[ref]
        try:
            self.client.get_model_version(name, ref)
        except MlflowException as exc:
            have = sorted(int(v.version) for v in self._versions(name))
            raise RegistryError(
                f"Expected version {ref} of '{name}'. Got no such version; versions: {have}."
            ) from exc
        return ref

    def _info(self, mv: Any, aliases: dict[str, str]) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        user = mv.user_id or None
        if getattr(mv, "model_id", None):
            try:
                logged = self.client.get_logged_model(mv.model_id)
                metrics.update({m.key: float(m.value) for m in logged.metrics or []})
                params.update(logged.params or {})
            except MlflowException:
                pass  # versions registered from a run path have no logged model
        if mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
                metrics.update({k: float(v) for k, v in run.data.metrics.items()})
                params.update(run.data.params)
                user = user or run.info.user_id
            except MlflowException:
                pass  # the run was deleted; the version itself still loads
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            aliases=sorted(a for a, v in aliases.items() if v == str(mv.version)),
            created_at=_ms_to_dt(mv.creation_timestamp),
            user=user,
            run_id=mv.run_id,
            status=str(mv.status),
            metrics=metrics,
            params=params,
            tags=dict(mv.tags or {}),
            source=mv.source or "",
        )

    # ----------------------------------------------------------------- loading
    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version with its contract (``scoring.loading.load_model``).

        Raises:
            ModelLoadError: The artifacts are missing or unreadable, or the model has
                no valid contract in its metadata.
        """
        uri = f"models:/{name}/{version}"
        try:
            # `models:/` URIs resolve through MLflow's process-wide registry URI, not
            # through this client: point it at this registry for the load only.
            with mlflow_uris(self.tracking_uri):
                scoring = load_model(uri)
        except Exception as exc:
            raise ModelLoadError(
                f"Expected {name}/{version} to load as a Tagsmith LightGBM model from {uri}. "
                f"Got {type(exc).__name__}: {exc}"
            ) from exc
        return LoadedModel(name, str(version), task_of(name, scoring.contract.target), scoring)

    # ----------------------------------------------------------------- writing
    def lock(self, name: str) -> FileLock:
        """The cross-process lock serialising alias moves of ``name`` (re-entrant)."""
        with self._locks_guard:
            if name not in self._locks:
                self.lock_dir.mkdir(parents=True, exist_ok=True)
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
                self._locks[name] = FileLock(self.lock_dir / f"{safe}.lock")
            return self._locks[name]

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold ``name``'s lock, or fail with :class:`PromotionConflict` after the timeout."""
        lock = self.lock(name)
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout as exc:
            raise PromotionConflict(
                f"Expected to be the only promotion or rollback of '{name}'. Got another "
                f"one holding {lock.lock_file} for over {self.lock_timeout:g}s; nothing was "
                "changed. Re-run when it has finished."
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def sync_history(self, name: str, *, at: datetime | None = None) -> list[AliasEvent]:
        """Record alias moves made outside Tagsmith (MLflow UI, other tools) as 'observed'.

        Holds the model's lock so two commands looking at once record a move once.
        """
        with self.locked(name):
            at = at or datetime.now(UTC)
            current = self.aliases(name)
            recorded = {ev.alias for ev in self.history.events(name)}
            out = []
            for alias in sorted(recorded | set(current)):
                before = self.history.last_recorded(name, alias)
                now = current.get(alias)
                if before != now:
                    out.append(
                        self.history.append(
                            model=name,
                            alias=alias,
                            version=now,
                            previous_version=before,
                            at=at,
                            actor="unknown (outside tagsmith)",
                            action="observed",
                            reason="alias found moved in the registry",
                        )
                    )
            return out

    def record_move(
        self,
        name: str,
        alias: str,
        *,
        actor: str,
        action: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AliasEvent | None:
        """Record who moved ``alias`` when it was moved by other code (e.g. training).

        Appends the alias's current holder unless the history already says so;
        returns the entry, or None when there was nothing new to record.
        """
        with self.locked(name):
            now = self.alias_version(name, alias)
            before = self.history.last_recorded(name, alias)
            if now == before:
                return None
            return self.history.append(
                model=name,
                alias=alias,
                version=now,
                previous_version=before,
                at=datetime.now(UTC),
                actor=actor,
                action=action,
                reason=reason,
                details=details,
            )

    def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        expected: str | None,
        actor: str,
        action: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` if it still points at ``expected`` (compare-and-set).

        Takes the model's lock (re-entrant, so callers may already hold it), records
        the move in the alias history and tags the version in MLflow.

        Raises:
            PromotionConflict: The alias no longer points at ``expected``, or the lock
                is held elsewhere; nothing was changed.
        """
        with self.locked(name):
            current = self.alias_version(name, alias)
            if current != expected:
                raise PromotionConflict(
                    f"Expected '{alias}' of '{name}' to be {_v(expected)} (what this "
                    f"{action} was judged against). Got {_v(current)}: it moved meanwhile, "
                    "so nothing was changed. Re-run to judge against the new holder."
                )
            at = datetime.now(UTC)
            self.client.set_registered_model_alias(name, alias, version)
            event = self.history.append(
                model=name,
                alias=alias,
                version=version,
                previous_version=current,
                at=at,
                actor=actor,
                action=action,
                reason=reason,
                details=details,
            )
            for key, value in (
                (f"tagsmith.{alias}.since", at.isoformat(timespec="seconds")),
                (f"tagsmith.{alias}.by", actor),
                (f"tagsmith.{alias}.action", action),
                (f"tagsmith.{alias}.reason", reason or "-"),
            ):
                self.client.set_model_version_tag(name, version, key, value)
            return event


def _v(version: str | None) -> str:
    return "unset" if version is None else f"v{version}"


def _quote(name: str) -> str:
    if "'" in name:
        raise RegistryError(f"Expected a model name without quotes. Got {name!r}.")
    return name
