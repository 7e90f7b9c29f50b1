"""``tags run --engine spark``: rule tags and predicted tags, one bucket at a time.

Each bucket of customers (with all their events) is prepared once and runs the
project's own ``build_features`` and ``evaluate_tag_values`` with the population
aggregates pinned to their global values (:mod:`spark.thresholds`), then every
champion predictor (broadcast: unpickled once per executor worker) scores the same
feature frame. When no active rule counts raw events (the standard library), the
features are built once, kept on disk, and the aggregate passes and the tagging pass
read them a batch at a time; otherwise every pass reads the partitioned events. The
long tag table is written as Parquet ``<output>/tags/as_of=<date>/tag_id=<tag>/``
(written aside, renamed into place).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.events import prepare_events
from features.spec import FeatureSpec
from spark.facts import (
    PartitionedFacts,
    SparkFacts,
    map_partitions,
    map_to_partitions,
    partition_facts,
)
from spark.features import as_of_label, feature_dtypes
from spark.session import job_errors
from spark.storage import HadoopFiles
from spark.thresholds import (
    AGGREGATE_COLUMNS,
    aggregate_depth,
    aggregate_rows,
    aggregate_tags,
    global_thresholds,
)
from tags.catalogue import Catalogue
from tags.engine import evaluate_tag_values, long_table
from tags.rules import event_needs
from tags.rules.context import AggregateInputs
from tags.rules.windows import NAT, to_ns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["LONG_COLUMNS", "BucketTags", "SparkTagRun", "run_tags_spark", "window_events"]

# The long table as written (as_of is the folder; tag_id the partition folder).
LONG_COLUMNS = {
    "customer_id": "string",
    "tag_id": "string",
    "value": "string",
    "score": "float64",
    "source": "string",
    "version": "string",
}


@dataclass(frozen=True)
class BucketTags:
    """The per-bucket job (pickled to the executors).

    Attributes:
        spec: Feature spec.
        cutoff: The as-of date.
        catalogue: The tag catalogue (compiled rules travel with it).
        thresholds: Pinned population aggregates (tag -> text -> value).
        collect: Tags evaluated in collecting mode (empty: the tagging pass).
        predictors: A broadcast list of champion predictors (``None``: none).
    """

    spec: FeatureSpec
    cutoff: pd.Timestamp
    catalogue: Catalogue
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    collect: tuple[str, ...] = ()
    predictors: Any = None

    def _features(self, customers: pd.DataFrame, events: pd.DataFrame) -> tuple[Any, Any]:
        prepared = prepare_events(customers, events)
        return prepared, prepared.build_features(self.cutoff, spec=self.spec)

    def features_and_window_events(
        self, customers: pd.DataFrame, events: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """This bucket's features, and the events some rule's window reads: what every
        later pass needs, instead of every event with the features built again."""
        features = self._features(customers, events)[1]
        return features, window_events(events, self.catalogue, self.cutoff)

    def _collect(self, features: pd.DataFrame, prepared: Any) -> pd.DataFrame:
        inputs: AggregateInputs = {}
        evaluate_tag_values(
            features,
            prepared,
            self.catalogue,
            as_of=self.cutoff,
            tag_ids=self.collect,
            thresholds=self.thresholds,
            aggregate_inputs=inputs,
        )
        return aggregate_rows(inputs)

    def aggregates(self, customers: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """What each aggregate of the ``collect`` tags is computed from, in this bucket."""
        prepared, features = self._features(customers, events)
        return self._collect(features, prepared)

    def window_aggregates(self, features: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """:meth:`aggregates` from the output of :meth:`features_and_window_events`."""
        return self._collect(features, events)

    def _tag(self, features: pd.DataFrame, prepared: Any) -> pd.DataFrame:
        results = evaluate_tag_values(
            features, prepared, self.catalogue, as_of=self.cutoff, thresholds=self.thresholds
        )
        del prepared  # the events are not needed by the predictors: free them first
        parts = [long_table(features, results, self.catalogue, as_of=self.cutoff)]
        del results
        for predictor in self.predictors.value if self.predictors is not None else ():
            parts.append(predictor.predict_tags(features, as_of=self.cutoff))
        return pd.concat([p[list(LONG_COLUMNS)] for p in parts], ignore_index=True)

    def tags(self, customers: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """The long tag rows of this bucket's customers (rule tags, then predicted)."""
        # No local name keeps the prepared events alive: _tag frees them before scoring.
        return self._tag(*reversed(self._features(customers, events)))

    def window_tags(self, features: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """:meth:`tags` from the output of :meth:`features_and_window_events`."""
        return self._tag(features, events)


def window_events(events: pd.DataFrame, catalogue: Catalogue, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The events an active rule's window (``count(browse, last 90 days)``) reads: their
    types, from the earliest time a window of that type starts, before ``cutoff``."""
    rules = [
        rule
        for tag in catalogue.active(sources=("fact", "rule"))
        for rule in catalogue.compiled(tag.id).rules()
    ]
    needs = event_needs(rules, to_ns(cutoff))
    times, types = events["occurred_at"], events["event_type"]
    keep = (times < cutoff) & types.isin(list(needs))
    for event_type, start in needs.items():
        if start > NAT:
            keep &= ~((types == event_type) & (times < pd.Timestamp(start, unit="ns", tz="UTC")))
    return events[keep.to_numpy()].reset_index(drop=True)


@dataclass
class SparkTagRun:
    """What a Spark tagging pass produced.

    Attributes:
        uri: The long table's Parquet folder for this date.
        n_customers: Customers signed up before the cutoff (feature rows).
        thresholds: The global population aggregates used (tag -> text -> value).
        timings: Seconds per step.
        buckets: Number of customer partitions.
    """

    uri: str
    n_customers: int
    thresholds: dict[str, dict[str, float]]
    timings: dict[str, float]
    buckets: int


def _thresholds(
    source: PartitionedFacts,
    collect: Callable[[BucketTags, pd.DataFrame, pd.DataFrame], pd.DataFrame],
    job: BucketTags,
) -> dict[str, dict[str, float]]:
    """Global aggregates of the tags that use them (one pass per link of the longest
    chain of aggregates depending on aggregates, see ``aggregate_depth``), each pass
    ``collect(pass_job, customers, events)`` on every partition of ``source``."""
    tags = aggregate_tags(job.catalogue)
    passes = max((aggregate_depth(job.catalogue.compiled(t)) for t in tags), default=0)
    pinned: dict[str, dict[str, float]] = {}
    for _ in range(passes):
        pass_job = replace(job, thresholds=pinned, collect=tuple(tags))
        # global_thresholds reads the rows twice (counts, then order statistics):
        # persisted, the pass's rules run once, not twice.
        rows = map_partitions(source, partial(collect, pass_job), AGGREGATE_COLUMNS).persist()
        try:
            pinned = global_thresholds(rows)
        finally:
            rows.unpersist()
    return pinned


def run_tags_spark(
    session: SparkSession,
    facts: SparkFacts,
    *,
    spec: FeatureSpec,
    catalogue: Catalogue,
    cutoff: pd.Timestamp,
    predictors: Sequence[Any],
    output: str,
    buckets: int,
) -> SparkTagRun:
    """Tag every customer as of ``cutoff``; write the long table under ``output``.

    Raises:
        SparkJobError: A job failed (the executor's message, e.g. a rule error).
    """
    from pyspark.sql import functions as F

    timings: dict[str, float] = {}
    broadcast = session.sparkContext.broadcast(list(predictors)) if predictors else None
    job = BucketTags(spec, cutoff, catalogue, predictors=broadcast)
    # One shuffle of the events for every pass.
    partitioned = partition_facts(facts, buckets)
    source = partitioned
    collect: Callable[[BucketTags, pd.DataFrame, pd.DataFrame], pd.DataFrame]
    collect = BucketTags.aggregates
    if aggregate_tags(catalogue):
        # The first pass reads every event and builds the features once; it keeps them,
        # with the few events a rule's window reads, in the same partitions on disk
        # (not memory: the JVM heap is better left to Spark). The aggregate passes and
        # the tagging pass read that: one row per customer, not every event again.
        dtypes = feature_dtypes(spec, facts.customer_dtypes, facts.event_dtypes)
        source = map_to_partitions(
            partitioned, job.features_and_window_events, dtypes, facts.event_dtypes
        ).persist()
        collect = BucketTags.window_aggregates
    files = HadoopFiles(session)
    target = f"{output.rstrip('/')}/as_of={as_of_label(cutoff)}"
    temp = files.temp_sibling(target)
    try:
        start = time.perf_counter()
        with job_errors("population aggregates"):
            thresholds = _thresholds(source, collect, job)
        timings["population aggregates"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        final = replace(job, thresholds=thresholds)
        tag = final.tags if source is partitioned else final.window_tags
        tagged = map_partitions(source, tag, LONG_COLUMNS)
        with job_errors("tags run"):
            tagged.write.partitionBy("tag_id").parquet(temp)
            n_customers = facts.customers.filter(
                F.col("signup_at") < F.lit(cutoff.to_pydatetime())
            ).count()
        files.replace(temp, target)
    finally:
        files.delete(temp)
        source.unpersist()
        if broadcast is not None:
            broadcast.unpersist()
    timings["features, rule and predicted tags"] = round(time.perf_counter() - start, 3)
    return SparkTagRun(target, int(n_customers), thresholds, timings, buckets)
