"""The project's customer explainer: what ``customers show``, the service and the
console use to say why a customer has each tag.

Built once per :class:`~tagsmith.project.Project` use from its catalogue, feature spec,
fact store and tag store; feature visibility comes from the catalogue's rules and the
inputs of the models that produced the predicted tags.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from explain.lookup import CustomerExplainer
from explain.visibility import FeatureVisibility
from features.catalog import feature_catalog
from tagsmith.project import Project

__all__ = ["customer_explainer", "feature_visibility", "hash_customer_ids"]


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


def customer_explainer(project: Project) -> CustomerExplainer:
    """The explainer of ``project``'s customers (rule and fact tags)."""
    return CustomerExplainer(
        catalogue=project.catalogue(),
        spec=project.feature_spec(),
        facts=project.fact_store(),
        store=project.tag_store(),
        visibility=feature_visibility(project),
    )


def hash_customer_ids(project: Project, customer_ids: Iterable[str]) -> list[str]:
    """Keyed hashes of customer ids for the audit log (the service's pepper: no raw ids)."""
    pepper = project.api_keys().pepper
    return [
        hashlib.blake2b(c.encode("utf-8"), key=pepper, digest_size=10).hexdigest()
        for c in customer_ids
    ]
