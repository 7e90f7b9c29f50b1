"""Tag definitions: what one governed tag is, a pydantic model checked on load.

A :class:`TagDefinition` has a stable ASCII id, a display name in any language, a
category, description, owner, source (fact, rule or model), value type and values
(:class:`ValueDef`, or score bands: :class:`Band`), sensitivity, refresh schedule,
status and version and, for rule tags, its rule (:class:`RuleSpec`). The catalogue
(:mod:`tags.catalogue`) compiles the rules and checks names against the categories.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "STATUSES",
    "Band",
    "Case",
    "RuleSpec",
    "TagDefinition",
    "ValueDef",
    "normalise_name",
]

STATUSES: tuple[str, ...] = ("draft", "active", "deprecated")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VALUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")


def normalise_name(name: str) -> str:
    """The form two names are compared in: NFKC (full -> half width), casefold, no spaces."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


class ValueDef(BaseModel):
    """One value of a multi-valued (ordinal) tag.

    Attributes:
        id: Stable ASCII value, as stored and served (e.g. ``important_value``).
        name: Display name in any language (e.g. ``重要价值客户 important value``).
        description: What the value means.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    description: str = ""

    @field_validator("id")
    @classmethod
    def _ascii_id(cls, value: str) -> str:
        if not _VALUE_ID.match(value):
            raise ValueError(
                "value ids are ASCII letters, digits and _ . + - (at most 64, not starting with "
                f"a symbol); got {value!r}"
            )
        return value


class Band(BaseModel):
    """A band of a score tag: the value for scores at or above ``min`` (last: the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    name: str = ""
    min: float | None = None


class Case(BaseModel):
    """One case of a multi-valued rule: ``value`` where ``when`` holds (first match wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    when: str


class RuleSpec(BaseModel):
    """How a rule or fact tag is computed.

    Exactly one form:

    * boolean tags: ``when`` (a condition);
    * ordinal tags: ``cases`` (ordered, first match wins) and ``else``; or ``value``, an
      expression whose string result is the value (fact tags such as ``age_band``).

    Attributes:
        scope: Who the tag applies to (default everyone). Customers outside get no row,
            and aggregates such as ``median(x)`` are computed over the scope only.
        let: Named helper expressions, usable in later ``let``, ``when`` and cases.
        when: Condition of a boolean tag.
        cases: Ordered cases of an ordinal tag.
        else_: Value for customers in scope that match no case (``else`` in YAML).
        value: Expression giving the value itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    scope: str | None = None
    let: dict[str, str] = Field(default_factory=dict)
    when: str | None = None
    cases: list[Case] = Field(default_factory=list)
    else_: str | None = Field(default=None, alias="else")
    value: str | None = None

    @field_validator("let")
    @classmethod
    def _let_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[a-z_][a-z0-9_]*$", name):
                raise ValueError(f"let names must be lower snake_case, got {name!r}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> RuleSpec:
        forms = [self.when is not None, bool(self.cases), self.value is not None]
        if sum(forms) != 1:
            raise ValueError(
                "a rule has exactly one of 'when' (boolean tag), 'cases' (+ 'else', ordinal "
                f"tag) or 'value' (value expression); got {sum(forms)}"
            )
        if self.else_ is not None and not self.cases:
            raise ValueError("'else' goes with 'cases'")
        return self

    def expressions(self) -> Iterator[tuple[str, str]]:
        """(part, text) of every expression, in evaluation order."""
        if self.scope is not None:
            yield "scope", self.scope
        for name, text in self.let.items():
            yield f"let '{name}'", text
        if self.when is not None:
            yield "when", self.when
        for i, case in enumerate(self.cases, start=1):
            yield f"case {i} ('{case.value}')", case.when
        if self.value is not None:
            yield "value", self.value


class TagDefinition(BaseModel):
    """One catalogued tag (see the module docstring and README for every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    display_name: str
    category: str
    description: str
    owner: str
    source: Literal["fact", "rule", "model"]
    value_type: Literal["boolean", "ordinal", "score"]
    values: list[ValueDef] = Field(default_factory=list)
    open_values: bool = False
    bands: list[Band] = Field(default_factory=list)
    score_range: tuple[float, float] | None = None
    model: str | None = None
    sensitivity: Literal["public", "internal", "restricted"] = "internal"
    refresh: Literal["hourly", "daily", "weekly", "monthly", "on_demand"] = "daily"
    status: Literal["draft", "active", "deprecated"] = "draft"
    version: int = Field(default=1, ge=1)
    rule: RuleSpec | None = None
    # Important tags (high value, loyalty): a new version needs a reviewer's sign-off.
    review: Literal["none", "required"] = "none"

    @field_validator("id")
    @classmethod
    def _ascii_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                f"tag ids are lower snake_case ASCII, at most 64 characters; got {value!r}"
            )
        return value

    @field_validator("display_name", "description", "owner")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("values", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("rule", mode="before")
    @classmethod
    def _plain_rule(cls, value: Any) -> Any:
        return {"when": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> TagDefinition:
        if self.source == "model":
            if self.rule is not None:
                raise ValueError("model tags are produced by a model: give 'model', not 'rule'")
            if not self.model:
                raise ValueError("model tags need 'model' (the registered model name)")
        elif self.rule is None:
            raise ValueError(f"{self.source} tags need a 'rule'")
        value_ids = [v.id for v in self.values]
        if len(set(value_ids)) != len(value_ids):
            raise ValueError(f"value ids must be unique; got {value_ids}")
        names = [normalise_name(v.name) for v in self.values if v.name]
        if len(set(names)) != len(names):
            raise ValueError("value display names must differ after normalisation")
        if self.value_type == "boolean":
            if self.values or self.bands or self.open_values:
                raise ValueError("boolean tags take no 'values', 'bands' or 'open_values'")
            if self.rule is not None and self.rule.when is None:
                raise ValueError("boolean tags need 'rule.when' (a condition)")
        elif self.value_type == "ordinal":
            if self.bands:
                raise ValueError("'bands' belong to score tags")
            if not self.values and not self.open_values:
                raise ValueError("ordinal tags need 'values' (or 'open_values: true')")
            rule = self.rule
            if rule is not None:
                if rule.when is not None:
                    raise ValueError("ordinal tags use 'rule.cases' or 'rule.value', not 'when'")
                if rule.cases and not self.open_values:
                    used = [c.value for c in rule.cases] + ([rule.else_] if rule.else_ else [])
                    unknown = [u for u in used if u not in value_ids]
                    if unknown:
                        raise ValueError(
                            f"case values {unknown} are not among the declared values {value_ids}"
                        )
        else:
            if self.source != "model":
                raise ValueError("score tags are produced by models (source: model)")
            if not self.bands:
                raise ValueError("score tags need 'bands' (value per score range)")
            mins = [b.min for b in self.bands]
            if any(m is None for m in mins[:-1]):
                raise ValueError("only the last band may omit 'min'")
            given = [m for m in mins if m is not None]
            if any(a <= b for a, b in itertools.pairwise(given)):
                raise ValueError(f"band 'min' values must strictly decrease; got {mins}")
            bands = [b.value for b in self.bands]
            if len(set(bands)) != len(bands):
                raise ValueError(f"band values must be unique; got {bands}")
        return self

    @property
    def value_ids(self) -> list[str]:
        """Values the tag may take, in order (``["true"]`` for boolean tags)."""
        if self.value_type == "boolean":
            return ["true"]
        if self.value_type == "score":
            return [b.value for b in self.bands]
        return [v.id for v in self.values]

    @property
    def version_label(self) -> str:
        """``id@version``, the version recorded with every value a rule emits."""
        return f"{self.id}@{self.version}"

    def band_of(self, scores: Iterable[float]) -> list[str | None]:
        """The band value of each score (``None`` for a missing score)."""
        out: list[str | None] = []
        for score in scores:
            if score is None or score != score:
                out.append(None)
                continue
            for band in self.bands:
                if band.min is None or score >= band.min:
                    out.append(band.value)
                    break
            else:
                out.append(None)
        return out

    def as_record(self) -> dict[str, Any]:
        """The definition as JSON data; ``review`` only when set, so definitions written
        before the field existed compare equal."""
        exclude = {"review"} if self.review == "none" else None
        return self.model_dump(mode="json", by_alias=True, exclude=exclude)

    def fingerprint(self) -> str:
        """sha256 of the definition (what ``plan`` compares)."""
        text = json.dumps(self.as_record(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
