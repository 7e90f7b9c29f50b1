"""Champion models from the MLflow registry, by registered name only.

``serving`` never imports ``training``: the registry names (``churn-predictor``,
``value-predictor``), the serving alias (``champion``) and the model contract in
``scoring/contract.py`` (stored in each model's metadata) are the whole interface.

Two scoring paths share one implementation so batch and online scores are identical:

* batch (``tagsmith tags run``): :class:`ChampionPredictor` turns a feature frame into
  predicted tag rows (score, band or tier, ``name/version``);
* online (the HTTP service): :class:`ChampionModel` keeps the model input matrix of the
  whole feature snapshot prepared once, and a request runs ``Booster.predict`` on the
  rows it needs, then the contract's calibration.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.contract import ModelContract, calibrate, model_matrix
from scoring.errors import ModelLoadError, ScoringError
from scoring.loading import load_model, mlflow_uris

__all__ = [
    "ChampionModel",
    "ChampionPredictor",
    "MlflowModelSource",
    "ModelTag",
    "band_labels",
    "load_champion_predictors",
]

log = logging.getLogger(__name__)

# Which contract target each registered model must carry (a model registered under the
# wrong name would otherwise serve churn probabilities as spend, or the reverse).
EXPECTED_TARGETS: dict[str, str] = {"churn-predictor": "churn", "value-predictor": "value"}


@dataclass(frozen=True)
class ModelTag:
    """The catalogued tag a registered model produces.

    Attributes:
        tag_id: Tag id (``churn_risk``, ``predicted_value``).
        model: Registered model name.
        bands: (value, min) pairs, highest first; the last band's min may be ``None``
            (everything below). A score gets the first band whose min it reaches.
        score_range: Allowed score range, checked by the smoke test (``None``: any
            finite number).
    """

    tag_id: str
    model: str
    bands: tuple[tuple[str, float | None], ...]
    score_range: tuple[float, float] | None = None

    @classmethod
    def from_definition(cls, definition: Any) -> ModelTag:
        """From a catalogue ``TagDefinition`` with ``source: model``.

        Raises:
            ScoringError: The definition names no model or has no bands.
        """
        if not getattr(definition, "model", None) or not getattr(definition, "bands", None):
            raise ScoringError(
                f"Expected model tag '{definition.id}' to name its registered model and its "
                "bands in the catalogue. Got a definition without them."
            )
        bands = tuple((b.value, b.min) for b in definition.bands)
        rng = getattr(definition, "score_range", None)
        return cls(
            tag_id=definition.id,
            model=definition.model,
            bands=bands,
            score_range=(float(rng[0]), float(rng[1])) if rng else None,
        )


def band_labels(scores: np.ndarray, bands: Sequence[tuple[str, float | None]]) -> list[str]:
    """The band value of each score, vectorised (first band whose min the score reaches).

    Scores below every min (impossible when the last band is open) and NaN get the
    last band's value, as a missing score is treated as the lowest band.
    """
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(scores.shape, bands[-1][0], dtype=object)
    assigned = np.zeros(scores.shape, dtype=bool)
    for value, lower in bands:
        hit = ~assigned & (True if lower is None else scores >= lower)
        out[hit] = value
        assigned |= hit
    return out.tolist()


@dataclass(frozen=True)
class ChampionModel:
    """One loaded model version with its contract and the tag it produces.

    Implements ``serving.runtime.ServedModel``.
    """

    name: str
    version: str
    tag: ModelTag
    contract: ModelContract
    booster: Any
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def tag_id(self) -> str:
        """The tag this model produces."""
        return self.tag.tag_id

    @property
    def version_label(self) -> str:
        """``name/version``, recorded with every predicted tag."""
        return f"{self.name}/{self.version}"

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        """The model input matrix of ``features`` (the contract's encoding)."""
        return model_matrix(features, self.contract)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated scores of prepared rows: raw ``Booster.predict`` on one thread."""
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        raw = self.booster.predict(matrix, num_threads=1)
        return calibrate(np.asarray(raw, dtype=np.float64), self.contract, matrix)

    def label(self, scores: np.ndarray) -> list[str]:
        """Band (churn risk) or tier (predicted value) of each score."""
        return band_labels(scores, self.tag.bands)

    def smoke_test(self) -> None:
        """Predict one all-missing row and check the score is finite and in range.

        Raises:
            ModelLoadError: The prediction fails or is out of range.
        """
        row = np.full((1, len(self.contract.feature_names)), np.nan)
        try:
            score = float(self.predict(row)[0])
        except Exception as exc:
            raise ModelLoadError(
                f"{self.version_label} failed its smoke prediction: {type(exc).__name__}: {exc}"
            ) from exc
        lo, hi = self.tag.score_range or (-np.inf, np.inf)
        if not (np.isfinite(score) and lo - 1e-9 <= score <= hi + 1e-9):
            raise ModelLoadError(
                f"Expected {self.version_label}'s smoke prediction to be a finite score in "
                f"[{lo}, {hi}]. Got {score} instead."
            )


class MlflowModelSource:
    """Champion versions from an MLflow registry (``serving.runtime.ModelSource``).

    Args:
        tracking_uri: The registry (the project's SQLite store by default).
        tags: Registered model name -> the tag it produces.
        alias: Alias to serve.
        cache_dir: Where model artifacts are downloaded (one folder per version;
            a temporary folder when ``None``).
    """

    def __init__(
        self,
        tracking_uri: str,
        tags: Mapping[str, ModelTag],
        *,
        alias: str = "champion",
        cache_dir: Path | None = None,
    ) -> None:
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.tracking_uri = tracking_uri
        self.tags = dict(tags)
        self.alias = alias
        self.cache_dir = cache_dir
        # An explicit client, never the process-wide URIs: mlflow.set_tracking_uri also
        # sets MLFLOW_TRACKING_URI, which would leak into whatever runs next.
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def champion_version(self, name: str) -> str | None:
        """Version behind the alias, ``None`` when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(name, self.alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def load(self, name: str, version: str) -> ChampionModel:
        """Load ``models:/name/version`` with its contract and smoke-test it.

        Raises:
            ModelLoadError: No contract, wrong target, or a failed smoke prediction.
        """
        if name not in self.tags:
            raise ModelLoadError(
                f"Expected a model that produces a catalogued tag {sorted(self.tags)}. "
                f"Got {name!r}."
            )
        uri = f"models:/{name}/{version}"
        dst = None
        if self.cache_dir is not None:
            dst = self.cache_dir / name / str(version)
            dst = Path(tempfile.mkdtemp(prefix=f"{version}-", dir=_mkdir(dst.parent)))
        try:
            with mlflow_uris(self.tracking_uri):
                scoring = load_model(uri, dst_path=dst)
        except Exception as exc:
            raise ModelLoadError(f"Loading {uri} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            # The booster and contract are in memory now; a folder kept per load filled
            # the project's disk (one copy of the model per profile or worker start).
            if dst is not None:
                shutil.rmtree(dst, ignore_errors=True)
        expected = EXPECTED_TARGETS.get(name)
        if expected is not None and scoring.contract.target != expected:
            raise ModelLoadError(
                f"Expected {uri} to be trained for target {expected!r}. "
                f"Got a model for {scoring.contract.target!r}."
            )
        model = ChampionModel(
            name=name,
            version=str(version),
            tag=self.tags[name],
            contract=scoring.contract,
            booster=scoring.booster,
        )
        model.smoke_test()
        return model


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class ChampionPredictor:
    """Predicted tags of a feature frame from one champion model (batch tagging).

    The batch run's predictor: one vectorised pass over the frame, the same
    matrix, booster and calibration the HTTP service uses.
    """

    source = "model"

    def __init__(self, model: ChampionModel) -> None:
        self.model = model

    @property
    def name(self) -> str:
        """Registered model name."""
        return self.model.name

    @property
    def version(self) -> str:
        """``name/version`` recorded with every row."""
        return self.model.version_label

    @property
    def tag_id(self) -> str:
        """The tag this predictor writes."""
        return self.model.tag_id

    def predict_tags(self, features: pd.DataFrame, *, as_of: Any) -> pd.DataFrame:
        """Long tag rows (one per customer): customer_id, tag_id, value, score, source,
        version, as_of."""
        scores = self.model.predict(self.model.prepare(features))
        return pd.DataFrame(
            {
                "customer_id": features["customer_id"].astype("string").to_numpy(),
                "tag_id": self.model.tag_id,
                "value": pd.array(self.model.label(scores), dtype="string"),
                "score": scores,
                "source": "model",
                "version": self.model.version_label,
                "as_of": pd.Timestamp(as_of),
            }
        )


def load_champion_predictors(
    source: MlflowModelSource, names: Sequence[str] | None = None
) -> tuple[list[ChampionPredictor], list[str]]:
    """Predictors of every model with a champion, and a notice for each one without.

    Raises:
        ModelLoadError: A champion exists but cannot be loaded (a batch run must not
            silently drop a tag that is supposed to be predicted).
    """
    predictors: list[ChampionPredictor] = []
    notices: list[str] = []
    for name in names or list(source.tags):
        version = source.champion_version(name)
        if version is None:
            notices.append(
                f"No '{source.alias}' version of {name!r} in the registry: "
                f"tag '{source.tags[name].tag_id}' skipped (train and promote a model first)."
            )
            continue
        predictors.append(ChampionPredictor(source.load(name, version)))
    return predictors, notices
