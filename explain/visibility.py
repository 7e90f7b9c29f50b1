"""Which features a role may see: only those feeding a tag the role may see.

A feature *feeds* a rule or fact tag when any of the tag's expressions (scope, ``let``
names, conditions, cases, value) reads it, and a predicted tag when its model's
contract lists it as an input. A role that may not see a tag learns nothing of the
features only that tag reads: ``POST /score``, ``POST /explain``, ``customers show``
and the console's customer page all filter through one :class:`FeatureVisibility`,
built once from the catalogue and the serving models.

Attribute facts follow the features made from them (``age`` and ``age_band`` from the
birth-year column, each declared attribute column from itself).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from tags.catalogue import Catalogue

__all__ = ["FeatureVisibility", "rule_features", "tag_features"]


def rule_features(
    catalogue: Catalogue, tag_id: str, feature_names: Collection[str] | None = None
) -> set[str]:
    """Features (among ``feature_names`` when given) that rule or fact tag ``tag_id`` reads."""
    compiled = catalogue.compiled(tag_id)
    lets = {name for name, _ in compiled.lets}
    names: set[str] = set()
    for rule in compiled.rules():
        names |= set(rule.name_set) - lets
    return names if feature_names is None else names & set(feature_names)


def tag_features(
    catalogue: Catalogue,
    feature_names: Collection[str],
    model_features: Mapping[str, Iterable[str]],
) -> dict[str, frozenset[str]]:
    """Tag id -> the features feeding it, for every tag of the catalogue.

    Args:
        catalogue: The tag catalogue.
        feature_names: Every feature of the project's spec.
        model_features: Registered model name -> the inputs of the model version that
            produces its tag (a model tag without one is fed by nothing yet).
    """
    out: dict[str, frozenset[str]] = {}
    for tag in catalogue:
        if tag.source == "model":
            inputs = model_features.get(tag.model or "", ())
            out[tag.id] = frozenset(inputs) & frozenset(feature_names)
        else:
            out[tag.id] = frozenset(rule_features(catalogue, tag.id, feature_names))
    return out


@dataclass
class FeatureVisibility:
    """Features (and attribute facts) visible through a set of visible tags.

    Attributes:
        feeds: Tag id -> the features feeding it (:func:`tag_features`).
        attribute_sources: Feature -> the attribute facts it is made from.
    """

    feeds: Mapping[str, frozenset[str]]
    attribute_sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    _cache: dict[frozenset[str], frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        catalogue: Catalogue,
        feature_names: Collection[str],
        model_features: Mapping[str, Iterable[str]],
        *,
        birth_year_column: str | None = None,
        attribute_columns: Iterable[str] = (),
    ) -> FeatureVisibility:
        """Visibility from the catalogue, the feature names and the models' inputs."""
        sources: dict[str, tuple[str, ...]] = {c: (c,) for c in attribute_columns}
        if birth_year_column:
            sources["age"] = sources["age_band"] = (birth_year_column,)
        return cls(tag_features(catalogue, feature_names, model_features), sources)

    def features(self, visible_tags: Iterable[str]) -> frozenset[str]:
        """Features feeding at least one of ``visible_tags`` (cached per tag set)."""
        key = frozenset(visible_tags)
        cached = self._cache.get(key)
        if cached is None:
            names: set[str] = set()
            for tag_id in key:
                names |= self.feeds.get(tag_id, frozenset())
            cached = frozenset(names)
            self._cache[key] = cached
        return cached

    def attributes(self, visible_tags: Iterable[str]) -> frozenset[str]:
        """Attribute facts behind the visible features."""
        return frozenset(
            a for f in self.features(visible_tags) for a in self.attribute_sources.get(f, ())
        )
