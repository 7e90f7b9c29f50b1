"""A customer's profile: attributes, every visible tag with its value and its *why*.

:class:`CustomerProfile` is what ``tagsmith customers show``, ``POST /explain`` and the
console's customer page render. It is built by :mod:`explain.lookup` from the stores;
this module only holds the data and its JSON form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from explain.rules import TagTrace

__all__ = ["CustomerProfile", "TagLine", "Transition", "plain"]


def plain(value: Any) -> Any:
    """A JSON-ready scalar (NaN and missing -> ``None``, numpy scalars -> Python)."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is not None and not isinstance(value, (bool, int, float, str)):
        try:
            if value != value:  # pandas NA, NaT
                return None
        except (TypeError, ValueError):
            return None
        return str(value)
    return value


@dataclass(frozen=True)
class TagLine:
    """One tag of the customer, with why it has its value.

    Attributes:
        tag_id: The tag.
        display_name: Its display name in the catalogue.
        category: Its category.
        source: ``fact``, ``rule`` or ``model``.
        value: The stored value (``None``: the customer has no row of it).
        value_name: The value's display name (``None`` when the catalogue gives none).
        score: The model score of a predicted tag.
        version: What produced the stored value (``tag@version`` or ``model/version``).
        since: First as-of date of the current run of this value (ISO).
        why: The rule trace (:class:`~explain.rules.TagTrace`) or the model's reasons
            (:class:`~explain.models.ModelReasons`).
        notes: What the reader should know (e.g. the rule changed since the run).
    """

    tag_id: str
    display_name: str
    category: str
    source: str
    value: str | None
    value_name: str | None = None
    score: float | None = None
    version: str | None = None
    since: str | None = None
    why: Any = None
    notes: tuple[str, ...] = ()

    @property
    def trace(self) -> TagTrace | None:
        """The rule trace, for rule and fact tags."""
        return self.why if isinstance(self.why, TagTrace) else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tag_id": self.tag_id,
            "display_name": self.display_name,
            "category": self.category,
            "source": self.source,
            "value": self.value,
            "value_name": self.value_name,
            "score": self.score,
            "version": self.version,
            "since": self.since,
            "why": self.why.to_json() if self.why is not None else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Transition:
    """A change of one tag's value between two snapshots of the customer."""

    as_of: str
    tag_id: str
    before: str | None
    after: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"as_of": self.as_of, "tag_id": self.tag_id, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class CustomerProfile:
    """One customer as of one snapshot: attributes, tags and their whys, transitions.

    Attributes:
        customer_id: The customer.
        as_of: The snapshot's as-of date (ISO).
        run_id: The tagging run that wrote it.
        signup_at: When the customer signed up (ISO).
        attributes: The attribute facts the caller may see.
        features: The features the whys quote, name -> value.
        tags: Every tag the caller may see, in catalogue order.
        transitions: Recent changes of those tags, newest first.
        notes: What the reader should know about the whole profile.
    """

    customer_id: str
    as_of: str
    run_id: str
    signup_at: str | None
    attributes: dict[str, Any]
    features: dict[str, Any]
    tags: list[TagLine]
    transitions: list[Transition] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def tag(self, tag_id: str) -> TagLine:
        """The line of ``tag_id``.

        Raises:
            KeyError: The profile holds no such tag.
        """
        for line in self.tags:
            if line.tag_id == tag_id:
                return line
        raise KeyError(tag_id)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "customer_id": self.customer_id,
            "as_of": self.as_of,
            "run_id": self.run_id,
            "signup_at": self.signup_at,
            "attributes": self.attributes,
            "features": self.features,
            "tags": [t.to_json() for t in self.tags],
            "transitions": [t.to_json() for t in self.transitions],
            "notes": list(self.notes),
        }
