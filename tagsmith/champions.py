"""The project's champion models: what batch tagging and the tag service both serve.

The registered model names come from ``serving.models`` in ``tagsmith.yaml``, the tag
each produces from the catalogue, the versions from the registry alias
(``serving.alias``, ``champion`` by default).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from scoring.champions import (
    ChampionPredictor,
    MlflowModelSource,
    ModelTag,
    load_champion_predictors,
)
from tags.catalogue import Catalogue
from tagsmith.project import Project

__all__ = ["champion_predictors", "model_source", "model_tags"]


def model_tags(catalogue: Catalogue, names: Iterable[str] | None = None) -> dict[str, ModelTag]:
    """Registered model name -> the active catalogued tag it produces."""
    wanted = set(names) if names is not None else None
    out: dict[str, ModelTag] = {}
    for tag in catalogue.active(sources=("model",)):
        if tag.model and (wanted is None or tag.model in wanted):
            out[tag.model] = ModelTag.from_definition(tag)
    return out


def model_source(
    project: Project, *, alias: str | None = None, models: Iterable[str] | None = None
) -> MlflowModelSource:
    """Champion lookup in the project's registry for the served models.

    Args:
        project: The project (registry, catalogue, ``serving`` config).
        alias: Registry alias to serve (default: ``serving.alias``).
        models: Registered names to serve (default: ``serving.models``).
    """
    cfg = project.config.serving
    return MlflowModelSource(
        project.mlflow_tracking_uri,
        model_tags(project.catalogue(), cfg.models if models is None else models),
        alias=cfg.alias if alias is None else alias,
        cache_dir=project.data_dir / "serving" / "models",
    )


def champion_predictors(project: Project) -> tuple[list[ChampionPredictor], list[str]]:
    """Batch predictors of the champion models, and notices for models without one."""
    if not project.mlflow_dir.exists() and "MLFLOW_TRACKING_URI" not in os.environ:
        tags = model_tags(project.catalogue(), project.config.serving.models)
        return [], [
            f"No model registry yet ({project.mlflow_dir}): tag '{t.tag_id}' skipped "
            "(train and promote a model first)."
            for t in tags.values()
        ]
    return load_champion_predictors(model_source(project))
