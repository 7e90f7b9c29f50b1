"""Build a customer's profile from the project's stores: :class:`CustomerExplainer`.

Everything is read for one customer only: the customer's facts (Parquet filters), the
features of that customer as of the snapshot's date (the batch feature code over the
customer's own events: features of one customer depend on that customer's facts only),
the stored tag rows and their history. Population thresholds come from what the
tagging run recorded; for runs that predate that record they are recomputed once per
date from everyone's features.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

import pandas as pd

from explain.errors import ExplainError, UnknownCustomerError
from explain.models import ModelReasons
from explain.profile import CustomerProfile, TagLine, Transition, plain
from explain.rules import TagTrace, population_thresholds, trace_tags
from explain.storeview import customer_rows
from explain.visibility import FeatureVisibility
from features.errors import FeaturesError
from features.events import prepare_events
from features.spec import FeatureSpec
from features.store import FactStore
from scoring.errors import ScoringError
from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.store import TagStore

__all__ = ["CustomerExplainer"]

_TRANSITIONS = 12

# Reads the customer's facts while the tag store is queried: both spend their time in C
# without the GIL (Arrow decoding one Parquet row group, DuckDB scanning the snapshots),
# so on two cores a profile waits for the slower of the two rather than their sum. One
# shared pool per process (threads start on first use and idle between profiles).
_FACT_READS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tagsmith-profile-facts")


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def _value_name(tag: TagDefinition, value: str | None) -> str | None:
    if value is None:
        return None
    for v in tag.values:
        if v.id == value and v.name:
            return v.name
    for b in tag.bands:
        if b.value == value and b.name:
            return b.name
    return None


class CustomerExplainer:
    """Profiles of one project's customers, each tag with its why.

    Args:
        catalogue: The tag catalogue.
        spec: The feature spec the tagging runs use.
        facts: The fact store.
        store: The tag store.
        visibility: Which features each set of visible tags reveals.
        explain_model: (registered model name, version, one-row feature frame, stored
            score) -> the model's reasons (:class:`~explain.models.ModelReasons`) for
            that row, by the version that produced the stored value (``None``:
            predicted tags get no reasons).
    """

    def __init__(
        self,
        *,
        catalogue: Catalogue,
        spec: FeatureSpec,
        facts: FactStore,
        store: TagStore,
        visibility: FeatureVisibility,
        explain_model: Callable[[str, str, pd.DataFrame, float | None], ModelReasons] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.spec = spec
        self.facts = facts
        self.store = store
        self.visibility = visibility
        self.explain_model = explain_model
        self._population: dict[pd.Timestamp, dict[str, dict[str, float]]] = {}

    # ------------------------------------------------------------------ inputs
    def _thresholds(self, as_of: pd.Timestamp, meta: Mapping[str, Any] | None) -> dict[str, Any]:
        recorded = (meta or {}).get("thresholds")
        if isinstance(recorded, dict):
            return recorded
        if as_of not in self._population:
            # A run from before thresholds were recorded: recompute them from everyone.
            customers, events = self.facts.load_customers(), self.facts.load_events()
            prepared = prepare_events(customers, events)
            features = prepared.build_features(as_of, spec=self.spec)
            self._population[as_of] = {
                t.id: population_thresholds(
                    self.catalogue.compiled(t.id), features, events=prepared, as_of=as_of
                )
                for t in self.catalogue.active(sources=("fact", "rule"))
            }
        return self._population[as_of]

    def features(
        self, customer_id: str, as_of: pd.Timestamp
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(one-row feature frame, the customer's events, their customers row) at ``as_of``.

        Raises:
            UnknownCustomerError: No such customer, or not signed up by ``as_of``.
        """
        return self._features(customer_id, as_of, self.facts.load_customer(customer_id))

    def _features(
        self, customer_id: str, as_of: pd.Timestamp, facts: tuple[pd.DataFrame, pd.DataFrame]
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """:meth:`features` of the customer's facts, already read."""
        customers, events = facts
        if customers.empty:
            raise UnknownCustomerError(
                f"Expected a customer id of the fact store. Got {customer_id!r}, which is not "
                "there."
            )
        row = prepare_events(customers, events).build_features(as_of, spec=self.spec)
        if row.empty:
            raise UnknownCustomerError(
                f"Expected customer {customer_id!r} to have signed up before {as_of.isoformat()}. "
                f"Got signup_at {customers['signup_at'].iloc[0].isoformat()}."
            )
        return row, events, customers

    # ------------------------------------------------------------------ profile
    def profile(
        self,
        customer_id: str,
        *,
        visible_tags: Collection[str],
        as_of: Any = None,
    ) -> CustomerProfile:
        """The profile of ``customer_id`` in the snapshot current at ``as_of``.

        Only ``visible_tags`` appear, and only the features and attributes feeding them.

        Raises:
            ExplainError: There is no snapshot yet.
            UnknownCustomerError: The customer is not in the facts.
        """
        visible = [t for t in self.catalogue if t.id in set(visible_tags)]
        ids = [t.id for t in visible]
        reading: Future[tuple[pd.DataFrame, pd.DataFrame]] = _FACT_READS.submit(
            self.facts.load_customer, customer_id
        )
        try:
            rows = customer_rows(self.store, customer_id, tags=ids, as_of=as_of)
        except BaseException:
            wait([reading])  # no read left running; the tag store's error is the one raised
            raise
        facts = reading.result()
        ts, info = rows.as_of, rows.run
        row, events, customers = self._features(customer_id, ts, facts)
        by_tag = {str(r.tag_id): r for r in rows.current.itertuples(index=False)}
        since, transitions = _history(rows.history, rows.dates, ts)
        thresholds = self._thresholds(ts, info.meta)
        notes = _input_notes(info.meta, self.facts, self.catalogue)
        lines: list[TagLine] = []
        shown: set[str] = set()
        models: set[str] = set()
        ruled = [t for t in visible if t.source != "model" and t.status == "active"]
        numbers = {
            t.id: {
                k: float("nan") if v is None else float(v)
                for k, v in (thresholds.get(t.id) or {}).items()
            }
            for t in ruled
        }
        compiled = [self.catalogue.compiled(t.id) for t in ruled]
        traces = dict(
            zip(
                [t.id for t in ruled],
                trace_tags(compiled, row, numbers, events, ts),
                strict=True,
            )
        )
        for tag in visible:
            line = self._line(tag, by_tag.get(tag.id), row, traces.get(tag.id))
            lines.append(replace(line, since=since.get(tag.id)))
            if isinstance(line.why, TagTrace | ModelReasons):
                shown |= line.why.feature_names()
            if isinstance(line.why, ModelReasons):
                models.update(line.why.inputs)
        # Model reasons reveal inputs of a model whose tag the caller may see.
        allowed = self.visibility.features(ids) | models
        first = row.iloc[0]
        features = {n: plain(first[n]) for n in sorted(shown & allowed) if n in row.columns}
        attrs = self.visibility.attributes(ids)
        person = customers.iloc[0]
        attributes = {str(c): plain(person[c]) for c in customers.columns if c in attrs}
        return CustomerProfile(
            customer_id=customer_id,
            as_of=ts.isoformat(),
            run_id=info.run_id,
            signup_at=_iso(person["signup_at"]),
            attributes=attributes,
            features=features,
            tags=lines,
            transitions=transitions,
            notes=tuple(notes),
        )

    def _line(
        self,
        tag: TagDefinition,
        stored: Any,
        row: pd.DataFrame,
        trace: TagTrace | None,
    ) -> TagLine:
        value = None if stored is None else str(stored.value)
        score = None if stored is None else plain(stored.score)
        version = None if stored is None else str(stored.version)
        notes: list[str] = []
        why: Any = None
        if tag.source in ("rule", "fact"):
            if tag.status != "active":
                notes.append(f"the tag is {tag.status}: tagging runs skip it")
            else:
                why = trace
                if version is not None and version != tag.version_label:
                    notes.append(
                        f"stored by {version}; the catalogue now holds {tag.version_label}"
                    )
                if isinstance(why, TagTrace) and why.value != value:
                    notes.append(
                        f"the rule gives {why.value!r} today but the snapshot holds {value!r}: "
                        "facts or the rule changed since the run"
                    )
        elif version is not None and self.explain_model is not None and tag.model:
            name, _, model_version = version.rpartition("/")
            try:
                why = self.explain_model(name or tag.model, model_version, row, score)
            except (ExplainError, ScoringError, FeaturesError) as exc:
                notes.append(f"no reasons: {exc}")
            if isinstance(why, ModelReasons) and not why.consistent:
                notes.append(
                    f"recomputed score {why.score:.6g} differs from the stored {score}: "
                    "facts changed since the run"
                )
        return TagLine(
            tag_id=tag.id,
            display_name=tag.display_name,
            category=tag.category,
            source=tag.source,
            value=value,
            value_name=_value_name(tag, value),
            score=score,
            version=version,
            why=why,
            notes=tuple(notes),
        )


def _history(
    history: pd.DataFrame, dates: list[pd.Timestamp], as_of: pd.Timestamp
) -> tuple[dict[str, str], list[Transition]]:
    """(tag -> since when its current value holds, the recent changes) up to ``as_of``."""
    dates = [d for d in dates if d <= as_of]
    since: dict[str, str] = {}
    changes: list[Transition] = []
    for tag_id, rows in history.groupby("tag_id", sort=True):
        by_date = {
            pd.Timestamp(a): str(v) for a, v in zip(rows["as_of"], rows["value"], strict=True)
        }
        last: str | None = None
        start: pd.Timestamp | None = None
        for i, d in enumerate(dates):
            value = by_date.get(d)
            if i == 0 or value != last:
                if i > 0:
                    changes.append(Transition(d.isoformat(), str(tag_id), last, value))
                start = d
            last = value
        if last is not None and start is not None:
            since[str(tag_id)] = start.isoformat()
    changes.sort(key=lambda t: (t.as_of, t.tag_id), reverse=True)
    return since, changes[:_TRANSITIONS]


def _input_notes(
    meta: Mapping[str, Any] | None, facts: FactStore, catalogue: Catalogue
) -> list[str]:
    inputs = (meta or {}).get("inputs") or {}
    notes = []
    try:
        current = facts.fingerprint()
    except FeaturesError:  # an empty store says nothing about the run
        current = None
    if inputs.get("facts") and current and inputs["facts"] != current:
        notes.append(
            "facts were imported after this snapshot: whys are computed from today's facts"
        )
    if inputs.get("catalogue") and inputs["catalogue"] != catalogue.fingerprint():
        notes.append("the catalogue changed after this snapshot: whys use today's rules")
    return notes
