"""The feature spec: which point-in-time features to build, as data.

A spec names feature *families* and their parameters (windows, event types, rhythm
periods, age bands, attribute columns). Each family is a fixed, engine-independent
aggregation whose exact semantics are written once, in the catalogue
(:func:`features.catalog.feature_catalog`); the numpy engine (:mod:`features.families`)
computes a spec with vectorised array code, and the same spec (plus the catalogue's
definitions) could be compiled to SQL or Spark.

The default spec ships as ``features/default_spec.yaml``; a project may override it
with its own ``features.yaml``. :func:`spec_hash` fingerprints a spec so feature
snapshots and models record exactly which definitions produced them.

Dtype policy (every feature's dtype is declared in the catalogue, and both a one-date
and a many-date feature frame hold exactly these dtypes):

* counts (events, orders, purchase days, categories) are ``int32``;
* money (unit ``currency``: ``monetary_*``, ``{type}_amount_{w}d``) is ``float64``, so
  sums keep their cents and rule thresholds on money compare exactly;
* every other continuous value (days, ratios, trends, rates, scores, shares, entropy,
  age, decayed counts) is ``float32``: about 7 significant digits, far finer than any
  of them is meaningful, at half the memory of a long training table;
* flags are ``bool``; attributes and the age band are ``category`` (one byte per row
  instead of a string), with declared categories that do not depend on ``as_of``: the
  sorted distinct values of the attribute's column in the customers table, the age
  bands in age order; ``top_category`` is ``string`` (the categories seen in events
  would depend on events after ``as_of``).

Missing values: counts, sums and flags are never null (0 / ``False`` when nothing
happened); a floating-point feature is NaN when undefined (e.g. ``recency_days`` of a
customer who never purchased, with ``never_purchased`` saying why; a ratio whose
denominator is 0); a categorical or string value is null when the fact is missing. Each feature's
description states when it is null.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.errors import SpecError

__all__ = [
    "DEFAULT_SPEC_FILE",
    "FAMILIES",
    "AttributesSpec",
    "EngagementSpec",
    "FeatureSpec",
    "PreferenceSpec",
    "RhythmSpec",
    "default_spec",
    "load_spec",
    "spec_hash",
]

DEFAULT_SPEC_FILE = "default_spec.yaml"

Family = Literal[
    "rfm", "windowed", "trend", "rhythm", "activity", "preference", "attributes", "engagement"
]
FAMILIES: tuple[str, ...] = (
    "rfm",
    "windowed",
    "trend",
    "rhythm",
    "activity",
    "preference",
    "attributes",
    "engagement",
)


class RhythmSpec(BaseModel):
    """Parameters of the purchase-rhythm family.

    Attributes:
        active_weeks: How many weeks back ``active_week_share`` looks.
        loyalty_period_days: Length of one loyalty period.
        loyalty_periods: How many consecutive periods ``loyalty_score`` compares.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    active_weeks: int = Field(default=52, ge=1, le=520)
    loyalty_period_days: int = Field(default=30, ge=1, le=365)
    loyalty_periods: int = Field(default=6, ge=2, le=60)


class PreferenceSpec(BaseModel):
    """Parameters of the preference family.

    Attributes:
        event_type: Events whose ``category`` reveals preference (purchases by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: str = "purchase"


class AttributesSpec(BaseModel):
    """Parameters of the attribute family (customer facts as features).

    Attributes:
        columns: Attribute columns of the customers table passed through as strings.
        birth_year_column: Integer column the age is derived from (``None``: no age).
        age_bands: Increasing lower edges of the age bands; ages below the first edge
            fall in ``"<first"``, ages at or above the last in ``"last+"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] = Field(
        default_factory=lambda: ["gender", "region", "city", "channel", "occupation"]
    )
    birth_year_column: str | None = "birth_year"
    age_bands: list[int] = Field(default_factory=lambda: [18, 26, 36, 46, 56, 66])

    @field_validator("age_bands")
    @classmethod
    def _bands_increase(cls, value: list[int]) -> list[int]:
        if not value or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"must be a non-empty, strictly increasing list, got {value}")
        return value


def _distinct_days(value: list[int]) -> list[int]:
    if not value or any(d < 1 or d > 3650 for d in value) or len(set(value)) != len(value):
        raise ValueError(f"must be distinct whole days in [1, 3650], got {value}")
    return sorted(value)


def _unique_entries(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError(f"must not repeat entries, got {value}")
    return value


def _event_type_names(value: list[str]) -> list[str]:
    for name in value:
        if not name.isidentifier() or name != name.lower():
            raise ValueError(f"event types must be lower snake_case, got {name!r}")
    return value


class EngagementSpec(BaseModel):
    """Parameters of the engagement family: activity relative to the customer's own rates.

    A customer on the way out stops browsing and logging in before they stop buying;
    whether a silence is unusual depends on how active that customer normally is. This
    family measures recency, recent counts and exponentially decayed counts of
    engagement events against the customer's own long-run rate, the purchase rate per
    day since the first purchase, and whether the last purchase went wrong.

    Attributes:
        event_types: Non-purchase event types that show engagement (browsing, logins).
        recent_days: Window of the ``{type}_recent_ratio`` features.
        decay_days: Time constants (days) of the exponentially decayed counts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_types: list[str] = Field(default_factory=lambda: ["browse", "login"])
    recent_days: int = Field(default=14, ge=1, le=3650)
    decay_days: list[int] = Field(default_factory=lambda: [7, 30])

    @field_validator("event_types")
    @classmethod
    def _engagement_types(cls, value: list[str]) -> list[str]:
        if "purchase" in value:
            raise ValueError("purchases have their own engagement features; list others")
        return _event_type_names(_unique_entries(value))

    @field_validator("decay_days")
    @classmethod
    def _decays_valid(cls, value: list[int]) -> list[int]:
        return _distinct_days(value)


class FeatureSpec(BaseModel):
    """Which features to build.

    Attributes:
        version: Format version of the spec file.
        families: Feature families to build (see :data:`FAMILIES`).
        windows: Window lengths in days for the windowed and trend families.
        event_types: Event types counted per window.
        amount_event_types: Event types whose amounts are also summed per window.
        rhythm: Purchase-rhythm parameters.
        preference: Preference parameters.
        attributes: Attribute parameters.
        engagement: Engagement parameters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    families: list[Family] = Field(default_factory=lambda: list(FAMILIES))  # type: ignore[arg-type]
    windows: list[int] = Field(default_factory=lambda: [7, 30, 90, 180, 365])
    event_types: list[str] = Field(
        default_factory=lambda: ["purchase", "refund", "browse", "login", "complaint"]
    )
    amount_event_types: list[str] = Field(default_factory=lambda: ["purchase", "refund"])
    rhythm: RhythmSpec = Field(default_factory=RhythmSpec)
    preference: PreferenceSpec = Field(default_factory=PreferenceSpec)
    attributes: AttributesSpec = Field(default_factory=AttributesSpec)
    engagement: EngagementSpec = Field(default_factory=EngagementSpec)

    @field_validator("windows")
    @classmethod
    def _windows_valid(cls, value: list[int]) -> list[int]:
        return _distinct_days(value)

    @field_validator("families", "event_types", "amount_event_types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return _unique_entries(value)

    @field_validator("event_types", "amount_event_types")
    @classmethod
    def _identifiers(cls, value: list[str]) -> list[str]:
        return _event_type_names(value)

    def has(self, family: str) -> bool:
        """Whether ``family`` is built."""
        return family in self.families


def default_spec() -> FeatureSpec:
    """The spec shipped as ``features/default_spec.yaml``."""
    text = resources.files("features").joinpath(DEFAULT_SPEC_FILE).read_text(encoding="utf-8")
    return _parse(text, f"features/{DEFAULT_SPEC_FILE}")


def load_spec(path: Path) -> FeatureSpec:
    """Read and validate a feature spec YAML file.

    Raises:
        SpecError: The file is missing, is not YAML or breaks the schema; the message
            names the file and each offending key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"Expected a feature spec at {path}. Got no such file.") from exc
    return _parse(text, str(path))


def _parse(text: str, source: str) -> FeatureSpec:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{source} must hold a mapping. Got {type(data).__name__} instead.")
    try:
        return FeatureSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source} is an invalid feature spec ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                lines.append(f"  key '{key}': not a known setting (check the spelling).")
            else:
                got = "" if err["type"] == "missing" else f" Got {err.get('input')!r} instead."
                lines.append(f"  key '{key}': {err['msg']}.{got}")
        raise SpecError("\n".join(lines)) from exc


def spec_hash(spec: FeatureSpec) -> str:
    """A short, stable fingerprint of ``spec`` (sha256 of its canonical JSON)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
