"""The feature spec: which point-in-time features to build, as data.

A spec names feature *families* and their parameters (windows, event types, rhythm
periods, age bands, attribute columns). Each family is a fixed, engine-independent
aggregation whose exact semantics are written once, in :func:`feature_catalog`; the
numpy engine in :mod:`features.build` compiles a spec into vectorised array code, and
the same spec (plus the catalogue's definitions) could be compiled to SQL or Spark.

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
from dataclasses import dataclass
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
    "FeatureInfo",
    "FeatureSpec",
    "PreferenceSpec",
    "RhythmSpec",
    "age_band_labels",
    "default_spec",
    "feature_catalog",
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


@dataclass(frozen=True)
class FeatureInfo:
    """One feature of the catalogue.

    Attributes:
        name: Column name in feature frames.
        family: Family it belongs to.
        dtype: pandas dtype of the column: ``int32`` (counts), ``float64`` (money),
            ``float32`` (other continuous values), ``bool``, ``category`` or
            ``string``; floating columns use NaN for null, the others ``<NA>``/NaN.
        unit: Unit of the value (``days``, ``events``, ``currency``, ``ratio``, ...).
        description: Exact definition, including when the value is null.
    """

    name: str
    family: str
    dtype: str
    unit: str
    description: str


def age_band_labels(edges: list[int]) -> list[str]:
    """Labels of the age bands for ``edges`` (e.g. ``<18``, ``18-25``, ..., ``66+``)."""
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    return labels


def feature_catalog(spec: FeatureSpec | None = None) -> list[FeatureInfo]:
    """Every feature ``spec`` yields, in output column order, with its definition.

    All features are computed as of a cutoff ``as_of`` from events with
    ``occurred_at < as_of``; "days" are fractional (seconds / 86400) unless stated.
    """
    spec = spec or default_spec()
    out: list[FeatureInfo] = []

    def add(name: str, family: str, dtype: str, unit: str, description: str) -> None:
        out.append(FeatureInfo(name, family, dtype, unit, description))

    if spec.has("rfm"):
        add(
            "recency_days",
            "rfm",
            "float32",
            "days",
            "Days from the last purchase to as_of. Null if the customer never purchased.",
        )
        add(
            "never_purchased",
            "rfm",
            "bool",
            "flag",
            "True if the customer has no purchase before as_of (why recency is null).",
        )
        add(
            "frequency_orders",
            "rfm",
            "int32",
            "orders",
            "Distinct orders among purchases (a purchase without order_id is its own order).",
        )
        add(
            "frequency_days",
            "rfm",
            "int32",
            "days",
            "Distinct UTC calendar days with at least one purchase.",
        )
        add(
            "monetary_total",
            "rfm",
            "float64",
            "currency",
            "Purchase amounts minus refund amounts, all history (net of refunds); "
            "0 if none. Amounts are summed exactly at 0.0001 currency units.",
        )
        add(
            "monetary_mean",
            "rfm",
            "float64",
            "currency",
            "monetary_total / frequency_orders (net spend per order). Null if no orders.",
        )
        add(
            "monetary_max",
            "rfm",
            "float64",
            "currency",
            "Largest single purchase event amount (gross). Null if never purchased.",
        )
    amount_types = set(spec.amount_event_types)
    if spec.has("windowed"):
        for etype in spec.event_types:
            for w in spec.windows:
                add(
                    f"{etype}_count_{w}d",
                    "windowed",
                    "int32",
                    "events",
                    f"Number of {etype} events in [as_of - {w} days, as_of).",
                )
                if etype in amount_types:
                    add(
                        f"{etype}_amount_{w}d",
                        "windowed",
                        "float64",
                        "currency",
                        f"Sum of {etype} amounts in [as_of - {w} days, as_of); 0 if none.",
                    )
    if spec.has("trend"):
        for etype in spec.event_types:
            for w in spec.windows:
                add(
                    f"{etype}_count_trend_{w}d",
                    "trend",
                    "float32",
                    "ratio",
                    f"(last - previous) / (last + previous) of {etype} counts, last = "
                    f"[as_of - {w}d, as_of), previous = [as_of - {2 * w}d, as_of - {w}d); "
                    "in [-1, 1], 0 when both windows are empty.",
                )
    if spec.has("rhythm"):
        r = spec.rhythm
        add(
            "gap_mean_days",
            "rhythm",
            "float32",
            "days",
            "Mean gap in whole days between consecutive distinct purchase days. "
            "Null with fewer than 2 purchase days.",
        )
        add(
            "gap_median_days",
            "rhythm",
            "float32",
            "days",
            "Median of those gaps. Null with fewer than 2 purchase days.",
        )
        add(
            "gap_std_days",
            "rhythm",
            "float32",
            "days",
            "Population standard deviation of those gaps. Null with fewer than 2 purchase days.",
        )
        add(
            "lateness",
            "rhythm",
            "float32",
            "ratio",
            "recency_days / gap_mean_days: above 1 means later than the customer's usual "
            "rhythm. Null when either is null.",
        )
        add(
            "active_week_share",
            "rhythm",
            "float32",
            "ratio",
            f"Share of the last {r.active_weeks} weeks (7-day blocks of UTC days counted "
            "back from as_of, at most as many as the tenure covers) with a purchase.",
        )
        add(
            "loyalty_score",
            "rhythm",
            "float32",
            "score",
            f"Regularity over the last {r.loyalty_periods} periods of "
            f"{r.loyalty_period_days} days (as many as the tenure covers, at least 1): "
            "with x = purchase days per period, (share of periods with x > 0) / "
            "(1 + std(x) / mean(x)); in [0, 1], 0 without purchases in those periods.",
        )
    if spec.has("activity"):
        add("tenure_days", "activity", "float32", "days", "Days from signup_at to as_of.")
        add(
            "days_since_last_activity",
            "activity",
            "float32",
            "days",
            "Days from the last event of any type to as_of. Null if no events.",
        )
        add(
            "browse_to_purchase",
            "activity",
            "float32",
            "ratio",
            "frequency_orders / number of browse events, all history. Null if no browse.",
        )
        add(
            "refund_rate",
            "activity",
            "float32",
            "ratio",
            "Refund events / frequency_orders, all history. Null if no orders.",
        )
        add("refund_count", "activity", "int32", "events", "Refund events, all history.")
        add("complaint_count", "activity", "int32", "events", "Complaint events, all history.")
        add(
            "days_since_last_complaint",
            "activity",
            "float32",
            "days",
            "Days from the last complaint to as_of. Null if none.",
        )
    if spec.has("preference"):
        et = spec.preference.event_type
        add(
            "top_category",
            "preference",
            "string",
            "category",
            f"Most frequent category among {et} events with a category (ties: "
            "alphabetically first). Null if none.",
        )
        add(
            "top_category_share",
            "preference",
            "float32",
            "ratio",
            f"Share of those {et} events in the top category. Null if none.",
        )
        add(
            "distinct_categories",
            "preference",
            "int32",
            "categories",
            f"Number of distinct categories among {et} events.",
        )
        add(
            "category_entropy",
            "preference",
            "float32",
            "bits",
            f"Shannon entropy (base 2) of the category distribution of {et} events. Null if none.",
        )
    if spec.has("attributes"):
        a = spec.attributes
        if a.birth_year_column:
            add(
                "age",
                "attributes",
                "float32",
                "years",
                f"Calendar year of as_of minus {a.birth_year_column}. Null if unknown.",
            )
            add(
                "age_band",
                "attributes",
                "category",
                "band",
                "Age band, one of "
                + ", ".join(age_band_labels(a.age_bands))
                + " (the categories, in this order). Null if age is unknown.",
            )
        for column in a.columns:
            add(
                column,
                "attributes",
                "category",
                "category",
                f"The customer's '{column}' attribute fact; its categories are the "
                "distinct values of that column in the customers table, sorted. "
                "Null if missing.",
            )
    if spec.has("engagement"):
        _engagement_catalog(spec.engagement, add)
    return out


def _engagement_catalog(g: EngagementSpec, add: Any) -> None:
    tenure = "max(tenure_days, 1)"
    for etype in g.event_types:
        add(
            f"{etype}_recency_days",
            "engagement",
            "float32",
            "days",
            f"Days from the last {etype} event to as_of. Null if none.",
        )
        add(
            f"{etype}_per_day",
            "engagement",
            "float32",
            "events/day",
            f"{etype} events, all history, per day of tenure: count / {tenure}.",
        )
        add(
            f"{etype}_silence",
            "engagement",
            "float32",
            "events",
            f"{etype}_recency_days * {etype}_per_day: how many {etype} events the customer's "
            "own long-run rate would have produced since the last one. Null if none.",
        )
        add(
            f"{etype}_recent_ratio",
            "engagement",
            "float32",
            "ratio",
            f"{etype} events in [as_of - {g.recent_days}d, as_of) / ({etype}_per_day * "
            f"{g.recent_days}): recent activity against the usual rate (1 = as usual, "
            f"0 = silent). Null if {etype}_per_day is 0.",
        )
    types = ", ".join(g.event_types)
    for tau in g.decay_days:
        add(
            f"engagement_decayed_{tau}d",
            "engagement",
            "float32",
            "events",
            f"Sum over {types} events of exp(-age / {tau}), age = days from the event to "
            "as_of: a count that forgets with a time constant of "
            f"{tau} days; 0 if none.",
        )
        add(
            f"engagement_decayed_{tau}d_ratio",
            "engagement",
            "float32",
            "ratio",
            f"engagement_decayed_{tau}d / ({tau} * the sum of the {{type}}_per_day rates of "
            f"{types}): about 1 for a customer as active as usual lately. Null if those "
            "rates sum to 0.",
        )
        add(
            f"purchase_decayed_{tau}d",
            "engagement",
            "float32",
            "events",
            f"Sum over purchase events of exp(-age / {tau}), age in days to as_of; 0 if none.",
        )
    add(
        "purchase_per_day",
        "engagement",
        "float32",
        "orders/day",
        "frequency_orders / max(days from the first purchase to as_of, 1): the purchase "
        "rate since buying began. Null if never purchased.",
    )
    add(
        "purchase_silence",
        "engagement",
        "float32",
        "orders",
        "recency_days * purchase_per_day: orders the customer's own rate would have "
        "produced since the last purchase. Null if never purchased.",
    )
    add(
        "complained_since_last_purchase",
        "engagement",
        "bool",
        "flag",
        "True if a complaint happened at or after the last purchase (before as_of). "
        "False if never purchased.",
    )
    add(
        "refunded_since_last_purchase",
        "engagement",
        "bool",
        "flag",
        "True if a refund happened at or after the last purchase (before as_of). "
        "False if never purchased.",
    )
