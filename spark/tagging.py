"""``tags run --engine spark``: rule tags and predicted tags, one bucket at a time.

Each bucket of customers (with all their events) is prepared once and runs the
project's own ``build_features`` and ``evaluate_tag_values`` with the population
aggregates pinned to their global values (:mod:`spark.thresholds`), then every
champion predictor (broadcast: unpickled once per executor worker) scores the same
feature frame. The long tag table is written as Parquet
``<output>/tags/as_of=<date>/tag_id=<tag>/`` (written aside, renamed into place).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.events import prepare_events
from features.spec import FeatureSpec
from spark.facts import PartitionedFacts, SparkFacts, map_partitions, partition_facts
from spark.features import as_of_label
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
from tags.rules.context import AggregateInputs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["LONG_COLUMNS", "BucketTags", "SparkTagRun", "run_tags_spark"]

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

    def aggregates(self, customers: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """What each aggregate of the ``collect`` tags is computed from, in this bucket."""
        inputs: AggregateInputs = {}
        prepared, features = self._features(customers, events)
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

    def tags(self, customers: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """The long tag rows of this bucket's customers (rule tags, then predicted)."""
        prepared, features = self._features(customers, events)
        results = evaluate_tag_values(
            features, prepared, self.catalogue, as_of=self.cutoff, thresholds=self.thresholds
        )
        parts = [long_table(features, results, self.catalogue, as_of=self.cutoff)]
        del results, prepared
        for predictor in self.predictors.value if self.predictors is not None else ():
            parts.append(predictor.predict_tags(features, as_of=self.cutoff))
        return pd.concat([p[list(LONG_COLUMNS)] for p in parts], ignore_index=True)


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


def _thresholds(facts: PartitionedFacts, job: BucketTags) -> dict[str, dict[str, float]]:
    """Global aggregates of the tags that use them (one pass per link of the longest
    chain of aggregates depending on aggregates, see ``aggregate_depth``)."""
    tags = aggregate_tags(job.catalogue)
    passes = max((aggregate_depth(job.catalogue.compiled(t)) for t in tags), default=0)
    pinned: dict[str, dict[str, float]] = {}
    for _ in range(passes):
        pass_job = replace(job, thresholds=pinned, collect=tuple(tags))
        # global_thresholds reads the rows twice (counts, then order statistics):
        # persisted, the pass's features and rules run once, not twice.
        rows = map_partitions(facts, pass_job.aggregates, AGGREGATE_COLUMNS).persist()
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
    # One shuffle for every pass: the aggregate passes and the tagging pass read the
    # same persisted partitions (the first pass fills them).
    partitioned = partition_facts(facts, buckets)
    if aggregate_tags(catalogue):
        partitioned.persist()
    files = HadoopFiles(session)
    target = f"{output.rstrip('/')}/as_of={as_of_label(cutoff)}"
    temp = files.temp_sibling(target)
    try:
        start = time.perf_counter()
        with job_errors("population aggregates"):
            thresholds = _thresholds(partitioned, job)
        timings["population aggregates"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        tagged = map_partitions(partitioned, replace(job, thresholds=thresholds).tags, LONG_COLUMNS)
        with job_errors("tags run"):
            tagged.write.partitionBy("tag_id").parquet(temp)
            n_customers = facts.customers.filter(
                F.col("signup_at") < F.lit(cutoff.to_pydatetime())
            ).count()
        files.replace(temp, target)
    finally:
        files.delete(temp)
        partitioned.unpersist()
        if broadcast is not None:
            broadcast.unpersist()
    timings["features, rule and predicted tags"] = round(time.perf_counter() - start, 3)
    return SparkTagRun(target, int(n_customers), thresholds, timings, buckets)
