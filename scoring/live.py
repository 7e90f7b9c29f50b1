"""Live scoring: features, rule tags and predicted tags of a few customers, now.

The one fast path for everything that must score customers on demand rather than
read a tagging run's snapshot: ``POST /score``, explanations and real-time re-tagging.
It takes the customers' own facts (records, e.g. a request's body or the events of a
few customers read from the fact store) and runs the batch code on just them, so a
customer gets the same features and tags as in a tagging run, without any
whole-table step: no store read, no snapshot, nothing proportional to the number of
customers in the project.

Everything that does not depend on the customers is done once, when the
:class:`LiveScorer` is built: the feature spec and its catalogue, the rule catalogue's
type checks, each model's input plan. A call then codes the records into canonical
frames (vectorised, checked against the fact contract), builds the event index of
those customers only, computes every feature at the cutoff, evaluates the rule tags on
that index, and scores each model once for the whole batch. Batching is the lever:
the fixed cost of a call is paid once per batch, so 100 customers per call cost a
small multiple of one.

API (stable; ``rt15`` real-time tags and ``why17`` explanations build on it)::

    scorer = LiveScorer(spec=spec, catalogue=catalogue, facts=facts_config)
    result = scorer.score(customers, events, as_of=now, models=champions)
    result.features            # one row per customer (signed up before as_of), by id
    result.rule_tags           # long tag table (tags.store_format.TAG_COLUMNS)
    result.predictions["churn-predictor"].scores   # aligned with result.features
    result.skipped             # ids not scored (signup at or after as_of)

``customers`` are records with ``customer_id``, ``signup_at`` and attribute facts;
``events`` are records of the fact contract's event columns (``customer_id`` names
the customer). Timestamps may be ``datetime``/``pd.Timestamp`` or ISO text (naive
means UTC). Models are anything with ``prepare``, ``predict``, ``label``, ``name``,
``version`` and ``tag_id`` (``scoring.champions.ChampionModel``, the service's
served models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.cutoffs import AsOf, normalize_as_of
from features.errors import SchemaError
from features.events import PreparedEvents
from features.schema import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    EVENT_COLUMNS,
    TIMESTAMP_DTYPE,
    FactsConfig,
    check_amounts,
    customer_dtypes,
)
from features.spec import FeatureSpec, default_spec
from tags.catalogue import Catalogue
from tags.engine import empty_tag_table, evaluate_tags

__all__ = ["LiveModel", "LivePrediction", "LiveResult", "LiveScorer"]

Record = Mapping[str, Any]


class LiveModel(Protocol):
    """A loaded model that produces one predicted tag (e.g. ``ChampionModel``)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def tag_id(self) -> str: ...

    def prepare(self, features: pd.DataFrame) -> np.ndarray: ...

    def predict(self, matrix: np.ndarray) -> np.ndarray: ...

    def label(self, scores: np.ndarray) -> list[str]: ...


@dataclass(frozen=True)
class LivePrediction:
    """One model's scores of the scored customers (aligned with the feature rows).

    Attributes:
        name: Registered model name.
        version: Model version.
        tag_id: The tag it produces.
        scores: Calibrated score per feature row.
        labels: The tag value (band or tier) per feature row.
    """

    name: str
    version: str
    tag_id: str
    scores: np.ndarray
    labels: list[str]


@dataclass(frozen=True)
class LiveResult:
    """What :meth:`LiveScorer.score` computed.

    Attributes:
        as_of: The cutoff (UTC, whole second).
        features: One row per scored customer, ordered by ``customer_id``.
        rule_tags: Rule and fact tags of the scored customers (long table).
        predictions: Model name -> its scores of the feature rows.
        skipped: Ids of customers not scored: they signed up at or after ``as_of``.
    """

    as_of: pd.Timestamp
    features: pd.DataFrame
    rule_tags: pd.DataFrame
    predictions: dict[str, LivePrediction] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def row_of(self, customer_id: str) -> int | None:
        """Position of ``customer_id`` in :attr:`features` (``None``: not scored)."""
        ids = self.features["customer_id"]
        hit = np.flatnonzero((ids == customer_id).to_numpy(dtype=bool, na_value=False))
        return int(hit[0]) if len(hit) else None


class LiveScorer:
    """Features, rule tags and model scores of a handful of customers from their facts.

    Build once (per spec and catalogue) and call for every request; thread-safe (a
    call shares nothing mutable with another).

    Args:
        spec: The feature spec (default: the shipped one).
        catalogue: The tag catalogue whose active rule and fact tags are evaluated
            (``None``: no rule tags).
        facts: The facts config (attributes and event types of the contract).
    """

    def __init__(
        self,
        *,
        spec: FeatureSpec | None = None,
        catalogue: Catalogue | None = None,
        facts: FactsConfig | None = None,
    ) -> None:
        self.spec = spec or default_spec()
        self.catalogue = catalogue
        self.facts = facts or FactsConfig()
        self._event_types = frozenset(self.facts.all_event_types)
        self._types_arrow = pa.array(sorted(self._event_types), pa.large_string())
        self._customer_dtypes = customer_dtypes(self.facts)

    # ------------------------------------------------------------------ frames
    def customers_frame(self, customers: Sequence[Record]) -> pd.DataFrame:
        """Canonical customers of ``customers`` records (attributes missing -> null).

        Raises:
            SchemaError: An id is blank or repeated, or a value does not convert.
        """
        ids = [r.get("customer_id") for r in customers]
        if any(not isinstance(i, str) or not i.strip() for i in ids):
            raise SchemaError("Expected every customer to have a non-empty customer_id.")
        if len(set(ids)) != len(ids):
            raise SchemaError("Expected each customer once. Got a customer_id twice.")
        data: dict[str, Any] = {
            "customer_id": _strings(ids),
            "signup_at": _times([r.get("signup_at") for r in customers], "signup_at"),
        }
        for spec in self.facts.attributes:
            values = [r.get(spec.name) for r in customers]
            try:
                if spec.type == "date":
                    data[spec.name] = _times(values, spec.name, nullable=True)
                elif spec.type in ("int", "float"):
                    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="raise")
                    data[spec.name] = numbers.astype(spec.dtype).array
                else:
                    data[spec.name] = _strings(values)
            except (ValueError, TypeError, OverflowError) as exc:
                raise SchemaError(
                    f"Attribute '{spec.name}' of customers must convert to {spec.dtype}: {exc}"
                ) from exc
        return pd.DataFrame(data, copy=False)

    def events_frame(self, events: Sequence[Record]) -> pd.DataFrame:
        """Canonical events of ``events`` records.

        Raises:
            SchemaError: An event type is unknown, an amount is missing on a purchase
                or refund or out of range, or a value does not convert.
        """
        fields = _event_fields(events)
        kinds = fields["event_type"]
        unknown = pc.invert(pc.fill_null(pc.is_in(kinds, value_set=self._types_arrow), False))
        if pc.any(unknown).as_py():  # null (falsy) when there are no events
            got = kinds.filter(unknown)[0].as_py()
            raise SchemaError(
                f"Expected each event_type among {sorted(self._event_types)}. Got {got!r}."
            )
        occurred = fields["occurred_at"]
        if occurred.null_count:
            raise SchemaError("Expected a time in every 'occurred_at'. Got a missing one.")
        data: dict[str, Any] = {
            "customer_id": pd.arrays.ArrowStringArray(fields["customer_id"]),
            "occurred_at": pd.DatetimeIndex(occurred.to_numpy(zero_copy_only=False))
            .tz_localize("UTC")
            .astype(TIMESTAMP_DTYPE)
            .array,
            "event_type": pd.arrays.ArrowStringArray(kinds),
        }
        for name in ("amount", "quantity"):
            values = np.asarray(fields[name].to_numpy(zero_copy_only=False), dtype=np.float64)
            if not np.all(np.isfinite(values) | np.isnan(values)) or (values < 0).any():
                raise SchemaError(f"Column '{name}' of events must be finite numbers >= 0.")
            data[name] = values
        needs = pc.is_in(kinds, value_set=_AMOUNT_TYPES).to_numpy(zero_copy_only=False)
        if (needs & np.isnan(data["amount"])).any():
            raise SchemaError("Expected an amount on every purchase and refund event. Got none.")
        check_amounts(pd.Series(data["amount"]))
        for name in ("category", "product_id", "order_id"):
            data[name] = pd.arrays.ArrowStringArray(fields[name])
        return pd.DataFrame(data, copy=False)

    # ------------------------------------------------------------------ scoring
    def prepare(self, customers: Sequence[Record], events: Sequence[Record]) -> PreparedEvents:
        """The event index of just these customers (events of other ids are ignored).

        Raises:
            SchemaError: The records break the fact contract.
        """
        return PreparedEvents(self.customers_frame(customers), self.events_frame(events))

    def features(
        self, customers: Sequence[Record], events: Sequence[Record], *, as_of: AsOf
    ) -> pd.DataFrame:
        """Features of ``customers`` at ``as_of`` (one row per customer signed up before
        it, ordered by ``customer_id``), from ``events`` alone.

        Raises:
            SchemaError: The records break the fact contract.
            FeaturesError: ``as_of`` is not a whole-second date/time.
        """
        cutoff = normalize_as_of(as_of)
        return self.prepare(customers, events).build_features(cutoff, spec=self.spec)

    def score(
        self,
        customers: Sequence[Record],
        events: Sequence[Record],
        *,
        as_of: AsOf,
        models: Mapping[str, LiveModel] | Iterable[LiveModel] = (),
        tag_ids: Iterable[str] | None = None,
    ) -> LiveResult:
        """Features, rule tags and each model's scores of ``customers`` at ``as_of``.

        Args:
            customers: Customer records (``customer_id``, ``signup_at``, attributes).
            events: Their event records (any order; only those before ``as_of`` count).
            as_of: The cutoff (naive: UTC; a whole second).
            models: Models to score with (a mapping name -> model, or models).
            tag_ids: Rule/fact tags to evaluate (default: every active one).

        Raises:
            SchemaError: The records break the fact contract.
            FeaturesError: ``as_of`` is not a whole-second date/time.
            TagsError: A rule fails on these customers.
        """
        cutoff = normalize_as_of(as_of)
        prepared = self.prepare(customers, events)
        features = prepared.build_features(cutoff, spec=self.spec, release=False)
        scored = set(features["customer_id"].astype(str))
        skipped = [
            str(r.get("customer_id")) for r in customers if r.get("customer_id") not in scored
        ]
        if self.catalogue is not None and len(features):
            rule_tags = evaluate_tags(
                features, prepared, self.catalogue, as_of=cutoff, tag_ids=tag_ids
            )
        else:
            rule_tags = empty_tag_table()
        chosen = models.values() if isinstance(models, Mapping) else models
        predictions = {m.name: _predict(m, features) for m in chosen}
        return LiveResult(cutoff, features, rule_tags, predictions, skipped)


def _predict(model: LiveModel, features: pd.DataFrame) -> LivePrediction:
    """One model's scores of every feature row (one ``predict`` call for the batch)."""
    if len(features):
        scores = np.asarray(model.predict(model.prepare(features)), dtype=np.float64)
        labels = list(model.label(scores))
    else:
        scores, labels = np.empty(0, dtype=np.float64), []
    return LivePrediction(model.name, model.version, model.tag_id, scores, labels)


_NAT = np.iinfo(np.int64).min
_AMOUNT_TYPES = pa.array(sorted(AMOUNT_REQUIRED_EVENT_TYPES), pa.large_string())
_TEXT = pa.large_string()
# Event records as one Arrow struct array: the conversion runs in C, one pass (times
# apart: Arrow asks each aware datetime for its offset, ~20x slower than reading it).
_EVENT_STRUCT = pa.struct(
    [
        ("customer_id", _TEXT),
        ("event_type", _TEXT),
        ("amount", pa.float64()),
        ("category", _TEXT),
        ("product_id", _TEXT),
        ("order_id", _TEXT),
        ("quantity", pa.float64()),
    ]
)


def _event_fields(events: Sequence[Record]) -> dict[str, pa.Array]:
    """The event columns as Arrow arrays (times: UTC microseconds; naive means UTC).

    Records of datetimes, text and numbers convert in C in one pass; anything else
    (ISO text times, numbers as text, ...) goes through the per-column conversions.

    Raises:
        SchemaError: A value does not convert.
    """
    stamps = _times([r.get("occurred_at") for r in events], "occurred_at")
    times = pa.array(stamps.to_numpy(dtype="datetime64[us]"), pa.timestamp("us"))
    try:
        table = pa.array(list(events), type=_EVENT_STRUCT)
        return {"occurred_at": times} | {f.name: table.field(f.name) for f in _EVENT_STRUCT}
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    columns = {c: [r.get(c) for r in events] for c in EVENT_COLUMNS}
    out: dict[str, pa.Array] = {"occurred_at": times}
    for name in ("customer_id", "event_type", "category", "product_id", "order_id"):
        out[name] = pa.array(
            [v if v is None or isinstance(v, str) else str(v) for v in columns[name]], _TEXT
        )
    for name in ("amount", "quantity"):
        try:
            out[name] = pa.array(
                np.array([np.nan if v is None else v for v in columns[name]], dtype=np.float64)
            )
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"Column '{name}' of events must be numbers: {exc}") from exc
    return out


def _strings(values: list[Any]) -> pd.arrays.ArrowStringArray:
    """A pandas ``string`` column of ``values`` (``None`` stays missing)."""
    text = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pd.arrays.ArrowStringArray(pa.array(text, pa.large_string()))


def _micros(value: datetime | None) -> int:
    """Microseconds since the epoch of a datetime (naive: UTC); ``None``: NaT."""
    if value is None:
        return _NAT
    if isinstance(value, pd.Timestamp):  # .value is UTC nanoseconds, naive taken as UTC
        return int(value.value // 1000)
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1000)


def _times(values: list[Any], name: str, *, nullable: bool = False) -> Any:
    """UTC timestamps (microseconds) of datetimes or ISO text; naive values are UTC.

    Raises:
        SchemaError: A value is missing (unless ``nullable``) or not a date/time.
    """
    # pandas Timestamps (what the service and the fact store hand over) in one pass.
    nanos = [v.value for v in values if type(v) is pd.Timestamp]
    if len(nanos) == len(values):  # .value: UTC nanoseconds (naive taken as UTC)
        stamps = (np.array(nanos, dtype=np.int64) // 1000).astype("datetime64[us]")
        return pd.DatetimeIndex(stamps).tz_localize("UTC").astype(TIMESTAMP_DTYPE).array
    if not nullable and any(v is None for v in values):
        raise SchemaError(f"Expected a time in every '{name}'. Got a missing one.")
    if all(isinstance(v, datetime) or (nullable and v is None) for v in values):
        # The service hands over parsed datetimes: no text parsing.
        micros = np.array([_micros(v) for v in values], dtype=np.int64)
        stamps = micros.astype("datetime64[us]")
        stamps[micros == _NAT] = np.datetime64("NaT")
        return pd.DatetimeIndex(stamps).tz_localize("UTC").astype(TIMESTAMP_DTYPE).array
    try:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise SchemaError(f"Column '{name}' must hold ISO 8601 date/times: {exc}") from exc
    return parsed.astype(TIMESTAMP_DTYPE).array
