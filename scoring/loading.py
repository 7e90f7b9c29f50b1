"""Loading a Tagsmith model from MLflow with its contract (``models:/name@alias`` or a run).

The contract travels in the MLflow model's ``metadata`` (see :mod:`scoring.contract`);
a loaded :class:`ScoringModel` scores feature frames through the one shared path,
:func:`scoring.contract.score_frame`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.contract import ModelContract, contract_from_metadata, score_frame

__all__ = [
    "ScoringModel",
    "load_model",
    "mlflow_uris",
    "restore_mlflow_uris",
    "saved_mlflow_uris",
]

# Serialises the swaps of MLflow's process-wide URIs (service reloads, console
# promotions and CLI loads may run in threads of one process).
_URIS_LOCK = threading.RLock()


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model with its contract: the unit that scores feature frames.

    Attributes:
        booster: The LightGBM booster.
        contract: Its model contract.
        uri: Where it was loaded from.
    """

    booster: Any
    contract: ModelContract
    uri: str

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated scores of every row of ``features`` (see :func:`score_frame`)."""
        return score_frame(self.booster, features, self.contract)


def load_model(model_uri: str, *, dst_path: Path | None = None) -> ScoringModel:
    """Load a Tagsmith model (e.g. ``models:/churn-predictor@champion``) and its contract.

    The model is downloaded once (into ``dst_path`` or a temporary folder that is
    removed afterwards); the booster is set to predict on one thread.

    Raises:
        SchemaError: The model carries no valid contract.
    """
    import mlflow.artifacts
    import mlflow.lightgbm
    from mlflow.models import Model

    def _load(folder: str) -> ScoringModel:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        spec = _mlmodel(Path(local))
        meta = Model.load(local).metadata if spec is None else spec.get("metadata")
        contract = contract_from_metadata(meta, source=model_uri)
        booster = _plain_booster(Path(local), spec)
        if booster is None:
            loaded = mlflow.lightgbm.load_model(local)
            booster = getattr(loaded, "booster_", loaded)
        return ScoringModel(booster=booster, contract=contract, uri=model_uri)

    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)
        return _load(str(dst_path))
    with tempfile.TemporaryDirectory(prefix="tagsmith-model-") as tmp:
        return _load(tmp)


def _mlmodel(folder: Path) -> dict[str, Any] | None:
    """The ``MLmodel`` file parsed with libyaml's C loader (None: not there / not a map).

    MLflow parses it with the pure-Python loader, twice per load: with a contract of a
    hundred features that took ~80 ms a parse, most of a one-customer profile's time.
    """
    import yaml

    path = folder / "MLmodel"
    if not path.is_file():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as handle:
        parsed = yaml.load(handle, Loader=loader)  # noqa: S506 (a safe loader)
    return parsed if isinstance(parsed, dict) else None


def _plain_booster(folder: Path, spec: dict[str, Any] | None) -> Any:
    """The booster of a model logged as a plain ``lightgbm.Booster`` (Tagsmith's own
    models), read straight from its file; None for anything else (MLflow loads those)."""
    import lightgbm as lgb

    flavor = ((spec or {}).get("flavors") or {}).get("lightgbm") or {}
    data = flavor.get("data")
    if flavor.get("model_class") != "lightgbm.basic.Booster" or not isinstance(data, str):
        return None
    path = folder / data
    if not path.is_file():
        return None
    return lgb.Booster(model_file=str(path))


@contextlib.contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri``, then restore.

    :func:`load_model` resolves ``models:/`` URIs through them, not through a client.
    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also write ``MLFLOW_TRACKING_URI``
    / ``MLFLOW_REGISTRY_URI`` into the environment; left there, a later caller in the
    process (another project, a test) would read and write another registry. So the
    exact state before is restored: unset stays unset (MLflow's getters would report a
    default instead, hence its module variables are read). One swap at a time per
    process (a lock), so concurrent loads cannot cross.
    """
    with _URIS_LOCK:
        before = saved_mlflow_uris()
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            restore_mlflow_uris(before)


def saved_mlflow_uris() -> tuple[str | None, str | None, str | None, str | None]:
    """MLflow's process-wide URIs and their variables, for :func:`restore_mlflow_uris`."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return (
        tracking_utils._tracking_uri,
        registry_utils._registry_uri,
        os.environ.get("MLFLOW_TRACKING_URI"),
        os.environ.get("MLFLOW_REGISTRY_URI"),
    )


def restore_mlflow_uris(saved: tuple[str | None, str | None, str | None, str | None]) -> None:
    """Put MLflow's process-wide URIs and their environment variables back as saved."""
    import mlflow

    tracking, registry, env_tracking, env_registry = saved
    mlflow.set_tracking_uri(tracking)  # type: ignore[arg-type]  # None unsets (MLflow 3)
    mlflow.set_registry_uri(registry)  # type: ignore[arg-type]
    for key, value in (
        ("MLFLOW_TRACKING_URI", env_tracking),
        ("MLFLOW_REGISTRY_URI", env_registry),
    ):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
