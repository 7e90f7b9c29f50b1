"""Champion predictions: the served-model protocols and the scores the service returns.

A :class:`LiveModel` holds a champion's scores of every customer of the current feature
snapshot, computed once per swap. ``POST /score`` scores its one customer through an
:class:`OnlineScorer` (the live path, arrays) and renders its rows with
:func:`posted_rows`; :func:`predict_posted` renders them from a feature frame (the
reference ``serving.posted`` keeps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from serving.errors import ModelLoadError

__all__ = [
    "LiveModel",
    "ModelSource",
    "OnlineScorer",
    "PostedScores",
    "ScoredCustomer",
    "ServedModel",
    "posted_rows",
    "predict_posted",
]

log = logging.getLogger(__name__)


class ServedModel(Protocol):
    """A loaded, smoke-tested model that produces one predicted tag."""

    @property
    def name(self) -> str:
        """Registered model name."""
        ...

    @property
    def version(self) -> str:
        """Registered model version."""
        ...

    @property
    def tag_id(self) -> str:
        """The tag it produces."""
        ...

    @property
    def loaded_at(self) -> str:
        """ISO time it was loaded."""
        ...

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for ``features`` (one row per feature row)."""
        ...

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated scores for the rows of a prepared matrix."""
        ...

    def label(self, scores: np.ndarray) -> list[str]:
        """The tag value (band or tier) of each score."""
        ...


class ModelSource(Protocol):
    """Where champion models come from (the MLflow registry in production)."""

    def champion_version(self, name: str) -> str | None:
        """Version behind the serving alias of ``name``, or ``None`` when there is none."""
        ...

    def load(self, name: str, version: str) -> ServedModel:
        """Load and smoke-test one version.

        Raises:
            ModelLoadError: It cannot be loaded or fails the smoke test.
        """
        ...


class PostedScores(Protocol):
    """One model's scores of the scored customers (``scoring.live.LivePrediction``)."""

    @property
    def scores(self) -> np.ndarray:
        """Calibrated score per scored customer."""
        ...

    @property
    def labels(self) -> Sequence[str]:
        """The tag value (band or tier) per scored customer."""
        ...


class ScoredCustomer(Protocol):
    """Posted facts scored by the live path, as ``POST /score`` reads them
    (``scoring.live.LiveResult``: arrays, no frame)."""

    @property
    def predictions(self) -> Mapping[str, PostedScores]:
        """Model name -> its scores of the scored customers."""
        ...

    def rule_rows(self, row: int) -> list[tuple[str, str, str]]:
        """(tag id, value, version label) of each rule/fact tag scored row ``row`` has."""
        ...

    def row_values(self, row: int) -> dict[str, Any]:
        """Feature row ``row`` as JSON-ready values (``customer_id`` first)."""
        ...


class OnlineScorer(Protocol):
    """Scores one customer's posted facts now (``serving.sources.LiveOnlineScorer``
    over ``scoring.live.LiveScorer``: the batch feature, rule and model code on arrays).
    """

    def score_live(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
        models: Mapping[str, ServedModel] | None = None,
        thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> ScoredCustomer:
        """The posted customer's features, rule tags and each of ``models``' scores.

        ``thresholds`` pins population aggregates (tag id -> aggregate text -> value,
        a batch run's) instead of computing them over this one customer.

        Raises:
            FeaturesError: The facts break the fact contract.
            TagsError: The customer signed up at or after ``as_of``, or a rule fails.
        """
        ...

    def warm(self, models: Mapping[str, ServedModel]) -> None:
        """Score a made-up customer once, so the first request does not pay the
        one-time costs (rule checks, column and matrix plans, lazy imports)."""
        ...


@dataclass(frozen=True)
class LiveModel:
    """A champion model with its scores of every customer of the current feature snapshot.

    Scores are a pure function of (model version, feature snapshot), and both change
    only by a swap, so they are computed once per swap, vectorised, and a request
    looks them up (``POST /score`` predicts on its own freshly prepared row).

    Attributes:
        model: The champion.
        scores: Its score of each feature-snapshot row.
        labels: The tag value of each score.
        texts: Each row's tag row as UTF-8 JSON, when the state keeper rendered them
            with the snapshot (``serving.rendering.predicted_texts``); None: rendered
            per request.
    """

    model: ServedModel
    scores: np.ndarray
    labels: np.ndarray
    texts: np.ndarray | None = None

    @classmethod
    def build(cls, model: ServedModel, features: pd.DataFrame | None) -> LiveModel:
        """Score every row of ``features`` (one ``Booster.predict`` call).

        Raises:
            ModelLoadError: A score is not a finite number.
        """
        if features is None or not len(features):
            return cls(model=model, scores=np.empty(0), labels=np.empty(0, dtype=object))
        scores = np.asarray(model.predict(model.prepare(features)), dtype=np.float64)
        if not np.all(np.isfinite(scores)):
            bad = int((~np.isfinite(scores)).sum())
            raise ModelLoadError(
                f"Expected finite scores from {model.name} version {model.version} on "
                f"the current feature snapshot. Got {bad} that are not, e.g. "
                f"{scores[~np.isfinite(scores)][:3].tolist()}."
            )
        return cls(model=model, scores=scores, labels=np.asarray(model.label(scores), dtype=object))


def predict_posted(
    models: Mapping[str, LiveModel],
    features: pd.DataFrame,
    selected: frozenset[str],
    *,
    as_of_iso: str,
) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """Predicted tag rows of a posted customer's feature row, by every selected champion.

    Returns:
        (tag rows as JSON-ready dicts, model name -> version that produced each).
    """
    rows: list[dict[str, Any]] = []
    versions: dict[str, str | None] = {}
    if not len(features):
        return rows, versions
    for name, live in models.items():
        model = live.model
        if model.tag_id not in selected:
            continue
        scores = model.predict(model.prepare(features))
        versions[name] = model.version
        rows.append(
            {
                "tag_id": model.tag_id,
                "value": model.label(scores)[0],
                "score": round(float(scores[0]), 6),
                "source": "model",
                "version": f"{model.name}/{model.version}",
                "as_of": as_of_iso,
            }
        )
    return rows, versions


def posted_rows(
    result: ScoredCustomer,
    models: Mapping[str, LiveModel],
    selected: frozenset[str],
    *,
    as_of_iso: str,
) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """The tag rows of a posted customer scored by the live path (one customer,
    ``scoring.live.LiveResult``): its selected rule/fact tags, then each selected
    champion's predicted tag, as :func:`predict_posted` and the snapshot index render
    them (same fields, order and rounding), without a frame.

    Returns:
        (tag rows as JSON-ready dicts, model name -> version that produced each).
    """
    rows: list[dict[str, Any]] = [
        {
            "tag_id": tag_id,
            "value": value,
            "score": None,
            "source": "rule",
            "version": version,
            "as_of": as_of_iso,
        }
        for tag_id, value, version in result.rule_rows(0)
        if tag_id in selected
    ]
    versions: dict[str, str | None] = {}
    for name, live in models.items():
        model = live.model
        if model.tag_id not in selected:
            continue
        prediction = result.predictions[model.name]
        versions[name] = model.version
        rows.append(
            {
                "tag_id": model.tag_id,
                "value": prediction.labels[0],
                "score": round(float(prediction.scores[0]), 6),
                "source": "model",
                "version": f"{model.name}/{model.version}",
                "as_of": as_of_iso,
            }
        )
    return rows, versions
