"""Live scoring: features, rule tags and predicted tags of a few customers, now.

The one fast path for everything that must score customers on demand rather than
read a tagging run's snapshot: ``POST /score``, explanations and real-time re-tagging.
It takes the customers' own facts (records, e.g. a request's body or the events of a
few customers read from the fact store) and runs the batch code on just them, so a
customer gets the same features and tags as in a tagging run, without any
whole-table step: no store read, no snapshot, nothing proportional to the number of
customers in the project.

Everything that does not depend on the customers is done once, when the
:class:`LiveScorer` is built: the feature spec's catalogue (column plan and dtypes),
the rule tags compiled and type-checked against it (:class:`tags.rule_arrays.ArrayRules`).
A call then turns the records into checked numpy/Arrow arrays
(:mod:`scoring.live_records`; no DataFrame), builds the event index of those customers
only from the arrays (:class:`features.small_events.SmallEvents`), computes every
feature at the cutoff with the batch feature families
(:func:`features.cutoffs.cutoff_columns`), evaluates the rule tags over the feature
arrays with the batch engine's per-tag evaluation, and scores each model once for the
whole batch on a contiguous float matrix (``Booster.predict`` on one thread). The
frames of :attr:`LiveResult.features` and :attr:`LiveResult.rule_tags` are built only
when read; ``LiveResult.columns`` and ``LiveResult.tag_values`` are the arrays.

API (stable; ``rt15`` real-time tags and ``why17`` explanations build on it)::

    scorer = LiveScorer(spec=spec, catalogue=catalogue, facts=facts_config)
    result = scorer.score(customers, events, as_of=now, models=champions)
    result.features            # one row per customer (signed up before as_of), by id
    result.rule_tags           # long tag table (tags.store_format.TAG_COLUMNS)
    result.predictions["churn-predictor"].scores   # aligned with result.features
    result.skipped             # ids not scored (signup at or after as_of)
    result.columns.columns     # the features as arrays (no frame); tag_values: per tag

``customers`` are records with ``customer_id``, ``signup_at`` and attribute facts;
``events`` are records of the fact contract's event columns (``customer_id`` names
the customer). Timestamps may be ``datetime``/``pd.Timestamp`` or ISO text (naive
means UTC). Models are anything with ``prepare``, ``predict``, ``label``, ``name``,
``version`` and ``tag_id`` (``scoring.champions.ChampionModel``, the service's
served models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.catalog import feature_catalog
from features.cutoffs import AsOf, CutoffColumns, cutoff_columns, normalize_as_of
from features.events import PreparedEvents
from features.families.base import Coded
from features.schema import FactsConfig, check_amounts
from features.small_events import SmallEvents
from features.spec import FeatureSpec, default_spec
from scoring.contract import ModelContract, columns_matrix, matrix_plan
from scoring.live_records import (
    Record,
    checked_events,
    customer_arrays,
    event_columns,
    event_fields,
    from_micros,
    strings,
)
from tags.catalogue import Catalogue
from tags.engine import TagValues, empty_tag_table, long_table
from tags.rule_arrays import ArrayRules

__all__ = ["LiveModel", "LivePrediction", "LiveResult", "LiveScorer"]


class LiveModel(Protocol):
    """A loaded model that produces one predicted tag (e.g. ``ChampionModel``).

    A model with a ``contract`` (:class:`scoring.contract.ModelContract`) is scored on
    a matrix built from the feature arrays; any other through ``prepare`` on the frame.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def tag_id(self) -> str: ...

    def prepare(self, features: pd.DataFrame) -> np.ndarray: ...

    def predict(self, matrix: np.ndarray) -> np.ndarray: ...

    def label(self, scores: np.ndarray) -> list[str]: ...


class LivePrediction:
    """One model's scores of the scored customers (aligned with the feature rows).

    Attributes:
        name: Registered model name.
        version: Model version.
        tag_id: The tag it produces.
        scores: Calibrated score per feature row.
        labels: The tag value (band or tier) per feature row.
    """

    __slots__ = ("labels", "name", "scores", "tag_id", "version")

    def __init__(
        self, name: str, version: str, tag_id: str, scores: np.ndarray, labels: list[str]
    ) -> None:
        self.name = name
        self.version = version
        self.tag_id = tag_id
        self.scores = scores
        self.labels = labels


class LiveResult:
    """What :meth:`LiveScorer.score` computed.

    Attributes:
        as_of: The cutoff (UTC, whole second).
        columns: The features as arrays (one entry per scored customer, by id).
        tag_values: Rows and values per evaluated rule/fact tag (rows index
            :attr:`columns`).
        predictions: Model name -> its scores of the feature rows.
        skipped: Ids of customers not scored: they signed up at or after ``as_of``.
    """

    def __init__(
        self,
        as_of: pd.Timestamp,
        columns: CutoffColumns,
        tag_values: list[TagValues],
        catalogue: Catalogue | None,
        predictions: dict[str, LivePrediction] | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        self.as_of = as_of
        self.columns = columns
        self.tag_values = tag_values
        self.predictions = predictions or {}
        self.skipped = skipped or []
        self._catalogue = catalogue
        self._rule_tags: pd.DataFrame | None = None
        self._ids: list[str] | None = None

    @property
    def customer_ids(self) -> list[str]:
        """The scored customers' ids, in row order (``customer_id`` order)."""
        if self._ids is None:
            self._ids = self.columns.customer_ids.to_pylist()
        return self._ids

    @property
    def features(self) -> pd.DataFrame:
        """One row per scored customer, ordered by ``customer_id`` (built on first read:
        the frame ``build_features`` gives for the same customers and cutoff)."""
        return self.columns.frame()

    @property
    def rule_tags(self) -> pd.DataFrame:
        """Rule and fact tags of the scored customers (long table, built on first read:
        what ``evaluate_tags`` gives for the same features)."""
        if self._rule_tags is None:
            if self._catalogue is None or not self.tag_values:
                self._rule_tags = empty_tag_table()
            else:
                self._rule_tags = long_table(
                    self.features, self.tag_values, self._catalogue, as_of=self.as_of
                )
        return self._rule_tags

    def rule_rows(self, row: int) -> list[tuple[str, str, str]]:
        """(tag id, value, version label) of each rule/fact tag feature row ``row``
        has, tag by tag (the rows :attr:`rule_tags` holds for that customer)."""
        if self._catalogue is None:
            return []
        out = []
        for found in self.tag_values:
            at = np.flatnonzero(found.rows == row)
            if len(at):
                label = self._catalogue.get(found.tag_id).version_label
                out.append((found.tag_id, found.values[int(found.codes[at[0]])], label))
        return out

    def row_values(self, row: int) -> dict[str, Any]:
        """Feature row ``row`` as Python values (``customer_id`` first, catalogue order;
        ``None`` where missing): what a JSON answer shows of the frame's row."""
        out: dict[str, Any] = {"customer_id": self.customer_ids[row]}
        for name, values in self.columns.columns.items():
            if isinstance(values, np.ndarray):
                value = values[row].item()
                out[name] = None if value != value else value  # NaN: missing
            elif isinstance(values, Coded):
                code = int(values.codes[row])
                out[name] = None if code < 0 else str(values.categories[code])
            else:
                out[name] = values[row].as_py()
        return out

    def row_of(self, customer_id: str) -> int | None:
        """Position of ``customer_id`` in :attr:`features` (``None``: not scored)."""
        try:
            return self.customer_ids.index(customer_id)
        except ValueError:
            return None


class LiveScorer:
    """Features, rule tags and model scores of a handful of customers from their facts.

    Build once (per spec and catalogue) and call for every request; thread-safe (a
    call shares nothing mutable with another; the compiled rules are only added to).

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
        self._catalog = feature_catalog(self.spec)
        self._customer_columns = ["customer_id", "signup_at"] + [
            a.name for a in self.facts.attributes
        ]
        kinds: dict[str, Any] = {"customer_id": "string"}
        kinds.update({info.name: _frame_dtype(info.dtype) for info in self._catalog})
        self._rules = ArrayRules(catalogue, kinds) if catalogue is not None else None

    # ------------------------------------------------------------------ frames
    def customers_frame(self, customers: Sequence[Record]) -> pd.DataFrame:
        """Canonical customers of ``customers`` records (attributes missing -> null).

        Raises:
            SchemaError: An id is blank or repeated, or a value does not convert.
        """
        found = customer_arrays(customers, self.facts)
        data: dict[str, Any] = {
            "customer_id": strings(list(found.ids)),
            "signup_at": from_micros(found.signup_us),
        }
        for spec in self.facts.attributes:
            values = found.attributes[spec.name]
            if spec.type == "date":
                data[spec.name] = from_micros(values)
            elif spec.type in ("int", "float"):
                data[spec.name] = pd.array(values, dtype="Float64").astype(spec.dtype)
            else:
                data[spec.name] = strings(values)
        return pd.DataFrame(data, copy=False)

    def events_frame(self, events: Sequence[Record]) -> pd.DataFrame:
        """Canonical events of ``events`` records.

        Raises:
            SchemaError: An event type is unknown, an amount is missing on a purchase
                or refund or out of range, or a value does not convert.
        """
        fields = event_fields(events)
        _, _, t_us, numbers = checked_events(fields, self._event_types)
        data: dict[str, Any] = {
            "customer_id": pd.arrays.ArrowStringArray(fields["customer_id"]),
            "occurred_at": from_micros(t_us),
            "event_type": pd.arrays.ArrowStringArray(fields["event_type"]),
            "amount": numbers["amount"],
            "quantity": numbers["quantity"],
        }
        check_amounts(pd.Series(data["amount"]))
        for name in ("category", "product_id", "order_id"):
            data[name] = pd.arrays.ArrowStringArray(fields[name])
        return pd.DataFrame(data, copy=False)

    # ------------------------------------------------------------------ scoring
    def prepare(self, customers: Sequence[Record], events: Sequence[Record]) -> PreparedEvents:
        """The event index of just these customers, built from arrays (events of other
        ids are ignored).

        Raises:
            SchemaError: The records break the fact contract.
        """
        found = customer_arrays(customers, self.facts)
        return SmallEvents(found, event_columns(events, found.ids, self._event_types))

    def columns(
        self, customers: Sequence[Record], events: Sequence[Record], *, as_of: AsOf
    ) -> tuple[SmallEvents, CutoffColumns]:
        """The event index and the features (as arrays) of ``customers`` at ``as_of``.

        Raises:
            SchemaError: The records break the fact contract.
            FeaturesError: ``as_of`` is not a whole-second date/time.
            SpecError: The spec names an attribute the facts do not declare.
        """
        return self._columns(customers, events, normalize_as_of(as_of))

    def _columns(
        self, customers: Sequence[Record], events: Sequence[Record], cutoff: pd.Timestamp
    ) -> tuple[SmallEvents, CutoffColumns]:
        found = customer_arrays(customers, self.facts)
        index = SmallEvents(found, event_columns(events, found.ids, self._event_types))
        return index, cutoff_columns(
            index, cutoff, self.spec, self._catalog, columns=self._customer_columns
        )

    def features(
        self, customers: Sequence[Record], events: Sequence[Record], *, as_of: AsOf
    ) -> pd.DataFrame:
        """Features of ``customers`` at ``as_of`` (one row per customer signed up before
        it, ordered by ``customer_id``), from ``events`` alone.

        Raises:
            SchemaError: The records break the fact contract.
            FeaturesError: ``as_of`` is not a whole-second date/time.
        """
        return self.columns(customers, events, as_of=as_of)[1].frame()

    def score(
        self,
        customers: Sequence[Record],
        events: Sequence[Record],
        *,
        as_of: AsOf,
        models: Mapping[str, LiveModel] | Iterable[LiveModel] = (),
        tag_ids: Iterable[str] | None = None,
        thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> LiveResult:
        """Features, rule tags and each model's scores of ``customers`` at ``as_of``.

        Args:
            customers: Customer records (``customer_id``, ``signup_at``, attributes).
            events: Their event records (any order; only those before ``as_of`` count).
            as_of: The cutoff (naive: UTC; a whole second).
            models: Models to score with (a mapping name -> model, or models).
            tag_ids: Rule/fact tags to evaluate (default: every active one).
            thresholds: Population aggregates (``median(...)``, ``quantile(...)``) to
                use instead of computing them over these customers: tag id -> aggregate
                text -> value, as a batch run records them (default: computed here).

        Raises:
            SchemaError: The records break the fact contract.
            FeaturesError: ``as_of`` is not a whole-second date/time.
            TagsError: A rule fails on these customers.
        """
        cutoff = normalize_as_of(as_of)
        index, columns = self._columns(customers, events, cutoff)
        n = len(columns)
        tag_values: list[TagValues] = []
        if self._rules is not None and n:
            arrays = {"customer_id": columns.customer_ids} | columns.columns
            tag_values = self._rules.evaluate(
                arrays,
                n,
                index,
                columns.codes,
                as_of=cutoff,
                tag_ids=tag_ids,
                thresholds=thresholds,
            )
        result = LiveResult(cutoff, columns, tag_values, self.catalogue)
        scored = set(result.customer_ids) if n < len(customers) else None
        if scored is not None:
            result.skipped = [
                str(r.get("customer_id")) for r in customers if r.get("customer_id") not in scored
            ]
        chosen = models.values() if isinstance(models, Mapping) else models
        matrices: dict[tuple[Any, ...], np.ndarray] = {}  # models with the same inputs
        result.predictions = {m.name: _predict(m, result, matrices) for m in chosen}
        return result

    def warm(self, models: Mapping[str, LiveModel] | Iterable[LiveModel] = ()) -> LiveResult:
        """Score a made-up customer (one event of each declared type, a year of
        tenure) with ``models``, so that a process's first real call does not pay the
        one-time costs: the rules' type checks, the column and matrix plans, lazy
        imports and first calls of the numpy/Arrow/LightGBM kernels.

        Raises:
            SchemaError, FeaturesError, TagsError: As :meth:`score` (a rule failing on
                the made-up customer).
        """
        as_of = pd.Timestamp.now(tz="UTC").floor("s")
        customer: dict[str, Any] = {
            "customer_id": "warm-up",
            "signup_at": as_of - pd.Timedelta(days=400),
        }
        customer.update({a.name: None for a in self.facts.attributes})
        events = [
            {
                "customer_id": "warm-up",
                "occurred_at": as_of - pd.Timedelta(days=3 + 30 * k, hours=k),
                "event_type": event_type,
                "amount": 10.0,
                "category": "warm-up",
                "product_id": "warm-up",
                "order_id": f"warm-up-{k}",
                "quantity": 1.0,
            }
            for k, event_type in enumerate(sorted(self._event_types))
        ]
        return self.score([customer], events, as_of=as_of, models=models)


def _frame_dtype(dtype: str) -> Any:
    """The pandas dtype of a catalogue dtype in the feature frame (rule kinds)."""
    return pd.CategoricalDtype() if dtype == "category" else pd.api.types.pandas_dtype(dtype)


def _predict(
    model: LiveModel, result: LiveResult, matrices: dict[tuple[Any, ...], np.ndarray]
) -> LivePrediction:
    """One model's scores of every feature row (one ``predict`` call for the batch);
    ``matrices`` keeps the input matrices built so far in this call, by their plan."""
    n = len(result.columns)
    if n:
        contract = getattr(model, "contract", None)
        if isinstance(contract, ModelContract):
            key = matrix_plan(contract).key
            matrix = matrices.get(key)
            if matrix is None:
                matrix = matrices[key] = columns_matrix(
                    result.columns.columns, n, contract, result.columns.blocks
                )
        else:
            matrix = model.prepare(result.features)
        scores = np.asarray(model.predict(matrix), dtype=np.float64)
        labels = list(model.label(scores))
    else:
        scores, labels = np.empty(0, dtype=np.float64), []
    return LivePrediction(model.name, model.version, model.tag_id, scores, labels)
