"""Batch tagging: facts -> point-in-time features -> rule tags -> predicted tags -> store.

:func:`run_tagging` is one tagging run. Its inputs (facts, feature spec, catalogue and
the predictors' model versions) are fingerprinted first: when the store already holds
a snapshot of the same as-of date from the same inputs, nothing is computed or written.
Otherwise every tag of every customer is computed in memory and written as one
snapshot in one transaction, so a run that fails at any step (or is killed) leaves
the previous snapshot current.

Predicted tags come from :class:`Predictor` objects (the champion models, built by
``scoring.champions``); with none, the run writes rule tags only and says so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from features.events import prepare_events
from features.spec import FeatureSpec, default_spec, spec_hash
from scoring.errors import ScoringError
from tags.catalogue import Catalogue
from tags.engine import concat_tag_tables, evaluate_tag_values, long_table
from tags.store import TagStore
from tags.store_format import TAG_COLUMNS, RunInfo, to_as_of

__all__ = [
    "NO_CHAMPION_NOTICE",
    "STEPS",
    "EngineOutput",
    "FactSource",
    "InMemoryFacts",
    "Predictor",
    "TaggingEngine",
    "TaggingResult",
    "default_as_of",
    "inputs_fingerprint",
    "run_tagging",
]

NO_CHAMPION_NOTICE = "no champion model yet: predicted tags skipped"
STEPS: tuple[str, ...] = ("load facts", "features", "rule tags", "predicted tags", "store")


class FactSource(Protocol):
    """What a run reads of the facts (``features.store.FactStore`` provides it)."""

    def load_customers(self) -> pd.DataFrame: ...

    def load_events(self, columns: list[str] | None = None) -> pd.DataFrame: ...

    def fingerprint(self) -> str: ...

    def last_event_at(self) -> pd.Timestamp: ...


@dataclass
class InMemoryFacts:
    """Canonical customers and events held in memory (benchmarks, notebooks, tests).

    The fingerprint hashes the frames' content, like the fact store's.
    """

    customers: pd.DataFrame
    events: pd.DataFrame
    _fingerprint: str | None = field(default=None, repr=False)

    def load_customers(self) -> pd.DataFrame:
        """The customers frame."""
        return self.customers

    def load_events(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The events frame (only ``columns`` when given)."""
        return self.events if columns is None else self.events[columns]

    def fingerprint(self) -> str:
        """sha256 of both frames' content."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for frame in (self.customers, self.events):
                h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def last_event_at(self) -> pd.Timestamp:
        """Time of the latest event."""
        return pd.Timestamp(self.events["occurred_at"].max())


@runtime_checkable
class Predictor(Protocol):
    """A source of predicted tags (one champion model).

    Attributes:
        name: Registered model name (e.g. ``churn-predictor``).
        version: What produced the rows (e.g. ``churn-predictor/3``); part of the
            run's inputs fingerprint, so a new champion makes a new snapshot.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def predict_tags(self, features: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
        """Long tag rows (:data:`tags.TAG_COLUMNS`, source ``model``) for ``features``."""
        ...


@dataclass
class EngineOutput:
    """What another engine (e.g. Spark) computed for a run, for the store to record.

    Attributes:
        long: The long tag table (:data:`tags.TAG_COLUMNS`; ``as_of`` may be absent).
        n_customers: Customers tagged (signed up before the as-of date).
        thresholds: Population aggregates the rules used (tag -> text -> value).
        timings: Seconds per step.
    """

    long: pd.DataFrame
    n_customers: int
    thresholds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class TaggingEngine(Protocol):
    """Computes a run's tags elsewhere (the Spark engine); the run records them."""

    @property
    def name(self) -> str: ...

    def tag(
        self,
        *,
        cutoff: pd.Timestamp,
        spec: FeatureSpec,
        catalogue: Catalogue,
        predictors: Sequence[Predictor],
    ) -> EngineOutput:
        """Rule and predicted tags of every customer as of ``cutoff``."""
        ...


@dataclass
class TaggingResult:
    """What a tagging run did.

    Attributes:
        run: The run as recorded in the store (``run.reused``: same inputs, no work).
        counts: Rows per tag (tag_id, source, rows, share of customers).
        notices: Things the user should know (e.g. predicted tags skipped).
        timings: Seconds per step.
    """

    run: RunInfo
    counts: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def default_as_of(last_event_at: pd.Timestamp) -> pd.Timestamp:
    """The default as-of: midnight UTC after the latest event's date.

    Features use events strictly before the as-of, so this counts every event of
    the latest day and names the snapshot by a whole date.
    """
    ts = to_as_of(last_event_at)
    return ts.normalize() + pd.Timedelta(days=1)


def inputs_fingerprint(
    *,
    facts: str,
    spec: str,
    catalogue: str,
    predictors: Sequence[tuple[str, str]],
) -> str:
    """sha256 of everything a run's output depends on (besides the as-of date)."""
    payload = {
        "facts": facts,
        "spec": spec,
        "catalogue": catalogue,
        "predictors": sorted(predictors),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_tagging(
    *,
    facts: FactSource,
    catalogue: Catalogue,
    store: TagStore,
    as_of: Any = None,
    spec: FeatureSpec | None = None,
    predictors: Sequence[Predictor] = (),
    notices: Sequence[str] = (),
    on_step: Callable[[str], None] | None = None,
    force: bool = False,
    engine: TaggingEngine | None = None,
) -> TaggingResult:
    """Tag every customer as of ``as_of`` and store the snapshot atomically.

    Args:
        facts: The validated facts (a ``features.store.FactStore``).
        catalogue: The tag catalogue (active fact and rule tags are evaluated).
        store: Where the snapshot goes.
        as_of: The as-of date (default: :func:`default_as_of` of the latest event).
        spec: Feature spec (default: the shipped one).
        predictors: Champion-model predictors; empty: rule tags only, with a notice.
        notices: Notices from loading the predictors, recorded with the run.
        on_step: Called with each step's name (from :data:`STEPS`) as it starts.
        force: Recompute and rewrite even when the same inputs are stored.
        engine: Compute the tags with this engine (``--engine spark``) instead of in
            this process; the run is fingerprinted, checked and stored the same way.

    Raises:
        ScoringError: A predictor returned rows breaking the long format or for a tag
            that is not a catalogued model tag.
        TagStoreError: The store refused the table or is busy.
    """
    step = on_step or (lambda _name: None)
    timings: dict[str, float] = {}
    notes = list(notices)
    if not predictors:
        notes.append(NO_CHAMPION_NOTICE)
    spec = spec or default_spec()
    cutoff = to_as_of(as_of) if as_of is not None else default_as_of(facts.last_event_at())
    facts_fp = facts.fingerprint()
    fingerprint = inputs_fingerprint(
        facts=facts_fp,
        spec=spec_hash(spec),
        catalogue=catalogue.fingerprint(),
        predictors=[(p.name, p.version) for p in predictors],
    )
    if not force:
        existing = store.find_run(cutoff, fingerprint)
        if existing is not None:
            return TaggingResult(
                run=RunInfo(**{**existing.__dict__, "reused": True}),
                counts=_counts_of(store, cutoff, catalogue),
                notices=notes,
            )

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        step(name)
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 3)

    if engine is not None:
        out = engine.tag(cutoff=cutoff, spec=spec, catalogue=catalogue, predictors=predictors)
        timings.update(out.timings)
        long = _checked_engine_rows(out.long, catalogue, cutoff)
        n_customers, thresholds = out.n_customers, out.thresholds
    else:
        long, n_customers, thresholds = _local_tags(
            facts, catalogue, cutoff, spec, predictors, timed
        )
    meta = {
        "inputs": {
            "facts": facts_fp,
            "spec": spec_hash(spec),
            "catalogue": catalogue.fingerprint(),
            "predictors": {p.name: p.version for p in predictors},
        },
        "notices": notes,
        "timings": timings,
        "thresholds": thresholds,
        "engine": engine.name if engine is not None else "local",
    }
    with timed("store"):
        run = store.write_snapshot(
            long,
            as_of=cutoff,
            fingerprint=fingerprint,
            meta=meta,
            n_customers=n_customers,
            force=force,
        )
    counts = _counts(long, n_customers)
    return TaggingResult(run=run, counts=counts, notices=notes, timings=timings)


def _local_tags(
    facts: FactSource,
    catalogue: Catalogue,
    cutoff: pd.Timestamp,
    spec: FeatureSpec,
    predictors: Sequence[Predictor],
    timed: Callable[[str], Any],
) -> tuple[pd.DataFrame, int, dict[str, dict[str, float | None]]]:
    """(long table, customers tagged, population thresholds) computed in this process."""
    with timed("load facts"):
        customers, events = facts.load_customers(), facts.load_events()
    with timed("features"):
        prepared = prepare_events(customers, events)
        features = prepared.build_features(cutoff, spec=spec)
    with timed("rule tags"):
        # The prepared events place window events on customers without hashing ids.
        results = evaluate_tag_values(features, prepared, catalogue, as_of=cutoff)
        rule_tags = long_table(features, results, catalogue, as_of=cutoff)
    # The population thresholds (medians, quantiles) each rule used on this date, so an
    # explanation of a stored value quotes the numbers that produced it.
    thresholds = {
        r.tag_id: {k: (v if v == v else None) for k, v in r.thresholds.items()}
        for r in results
        if r.thresholds
    }
    del results
    # The largest objects: free them before predicting and storing.
    del customers, events, prepared
    with timed("predicted tags"):
        predicted = [
            _check_predicted(p, p.predict_tags(features, as_of=cutoff), catalogue, cutoff)
            for p in predictors
        ]
    long = concat_tag_tables([rule_tags[list(TAG_COLUMNS)], *predicted])
    return long, len(features), thresholds


def _checked_engine_rows(
    long: pd.DataFrame, catalogue: Catalogue, as_of: pd.Timestamp
) -> pd.DataFrame:
    """An engine's long table in the contract's form; model rows only for model tags."""
    missing = [c for c in TAG_COLUMNS if c != "as_of" and c not in long.columns]
    if missing:
        raise ScoringError(
            f"Expected the engine's tag table to have columns {list(TAG_COLUMNS)}. "
            f"Got {missing} missing."
        )
    model_tags = {t.id for t in catalogue if t.source == "model"}
    rows = long["source"].astype("string") == "model"
    stray = sorted(set(long.loc[rows, "tag_id"].astype(str)) - model_tags)
    if stray:
        raise ScoringError(
            f"Expected predicted rows for catalogued model tags ({sorted(model_tags)}). "
            f"Got {stray}."
        )
    out = long[[c for c in TAG_COLUMNS if c != "as_of"]].copy()
    out["as_of"] = pd.Series(pd.Timestamp(as_of), index=out.index).astype("datetime64[us, UTC]")
    return concat_tag_tables([out])


def _check_predicted(
    predictor: Predictor, rows: pd.DataFrame, catalogue: Catalogue, as_of: pd.Timestamp
) -> pd.DataFrame:
    missing = [c for c in TAG_COLUMNS if c not in rows.columns]
    if missing:
        raise ScoringError(
            f"Expected predictor {predictor.name!r} to return columns {list(TAG_COLUMNS)}. "
            f"Got one missing {missing}."
        )
    model_tags = {t.id for t in catalogue if t.source == "model"}
    stray = sorted(set(rows["tag_id"].astype(str)) - model_tags)
    if stray:
        raise ScoringError(
            f"Expected predictor {predictor.name!r} to write catalogued model tags "
            f"({sorted(model_tags)}). Got {stray}."
        )
    out = rows[list(TAG_COLUMNS)].copy()
    out["as_of"] = as_of
    return out


def _counts(long: pd.DataFrame, n_customers: int) -> pd.DataFrame:
    counts = (
        long.groupby(["tag_id", "source"], observed=True)
        .size()
        .rename("rows")
        .reset_index()
        .sort_values("tag_id", ignore_index=True)
    )
    counts["share"] = counts["rows"] / n_customers if n_customers else 0.0
    return counts


def _counts_of(store: TagStore, as_of: pd.Timestamp, catalogue: Catalogue) -> pd.DataFrame:
    cov = store.coverage(as_of)
    info = store.run_info(as_of)
    per_tag = cov.groupby("tag_id")["count"].sum()
    rows = pd.DataFrame({"tag_id": per_tag.index.astype(str), "rows": per_tag.to_numpy()})
    sources = {t.id: t.source for t in catalogue}
    rows.insert(1, "source", [sources.get(str(t), "") for t in rows["tag_id"]])
    rows["share"] = rows["rows"] / info.n_customers if info.n_customers else 0.0
    return rows
