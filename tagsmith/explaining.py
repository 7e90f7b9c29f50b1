"""The project's customer explainer: what ``customers show``, the service and the
console use to say why a customer has each tag.

Built once per :class:`~tagsmith.project.Project` use from its catalogue, feature spec,
fact store and tag store; feature visibility comes from the catalogue's rules and the
inputs of the models that produced the predicted tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from explain.lookup import CustomerExplainer
from explain.models import ModelReasons, explain_model
from explain.visibility import FeatureVisibility
from explain.words import FeatureWords
from features.catalog import feature_catalog
from tagsmith.champions import model_source
from tagsmith.project import Project

__all__ = ["customer_explainer", "feature_visibility", "hash_customer_ids", "model_reasons"]


def feature_visibility(
    project: Project, model_features: Mapping[str, Iterable[str]] | None = None
) -> FeatureVisibility:
    """Which features each set of visible tags reveals, for ``project``.

    Args:
        project: The project.
        model_features: Registered model name -> its inputs (default: none known, so
            predicted tags reveal no feature).
    """
    spec = project.feature_spec()
    names = [f.name for f in feature_catalog(spec)]
    return FeatureVisibility.build(
        project.catalogue(),
        names,
        model_features or {},
        birth_year_column=spec.attributes.birth_year_column,
        attribute_columns=spec.attributes.columns,
    )


def model_reasons(
    project: Project,
) -> Callable[[str, str, pd.DataFrame, float | None], ModelReasons]:
    """(model name, version, feature row, stored score) -> that version's reasons.

    Each version is loaded from the project's registry once (the version that produced
    the stored value, so the explanation cannot disagree with it).
    """
    words = FeatureWords(feature_catalog(project.feature_spec()))
    loaded: dict[tuple[str, str], Any] = {}
    sources: list[Any] = []

    def explain(name: str, version: str, row: pd.DataFrame, stored: float | None) -> ModelReasons:
        key = (name, version)
        if key not in loaded:
            if not sources:  # the registry is opened only when a predicted tag needs it
                sources.append(model_source(project))
            loaded[key] = sources[0].load(name, version)
        model = loaded[key]
        return explain_model(
            model.booster,
            model.contract,
            row,
            name=name,
            version=version,
            words=words,
            stored_score=stored,
        )

    return explain


def customer_explainer(project: Project) -> CustomerExplainer:
    """The explainer of ``project``'s customers: rule traces and model reasons."""
    return CustomerExplainer(
        catalogue=project.catalogue(),
        spec=project.feature_spec(),
        facts=project.fact_store(),
        store=project.tag_store(),
        visibility=feature_visibility(project),
        explain_model=model_reasons(project),
    )


def hash_customer_ids(project: Project, customer_ids: Iterable[str]) -> list[str]:
    """Keyed hashes of customer ids for the audit log (the service's pepper: no raw ids)."""
    pepper = project.api_keys().pepper
    return [
        hashlib.blake2b(c.encode("utf-8"), key=pepper, digest_size=10).hexdigest()
        for c in customer_ids
    ]
