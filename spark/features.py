"""``features build --engine spark``: the project's feature builder, once per bucket.

Every bucket of customers (with all their events) goes through
:func:`features.events.prepare_events` and ``build_features`` exactly as a local run
does, so features are the same for every customer whatever the partitioning (no
feature depends on other customers). Each as-of date becomes one Parquet folder
``<output>/features/as_of=<date>/`` with a ``_tagsmith.json`` of its lineage (spec
hash, facts fingerprint, rows), written beside and renamed into place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.events import prepare_events
from features.spec import FeatureSpec, spec_hash
from spark.facts import SparkFacts, map_buckets
from spark.frames import empty_frame
from spark.session import job_errors
from spark.storage import HadoopFiles

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "AS_OF_COLUMN",
    "BucketFeatures",
    "FeatureOutput",
    "as_of_label",
    "build_features_spark",
    "feature_dtypes",
]

AS_OF_COLUMN = "as_of"


def as_of_label(ts: pd.Timestamp) -> str:
    """The folder label of a cutoff: ``2024-06-01``, or ``2024-06-01T12-30-00``."""
    ts = pd.Timestamp(ts).tz_convert("UTC")
    return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else f"{ts:%Y-%m-%dT%H-%M-%S}"


def feature_dtypes(
    spec: FeatureSpec, customer_dtypes: Mapping[str, Any], event_dtypes: Mapping[str, Any]
) -> dict[str, Any]:
    """Column -> dtype of the feature frame (the builder run on no customers)."""
    frame = prepare_events(empty_frame(customer_dtypes), empty_frame(event_dtypes)).build_features(
        pd.Timestamp("2000-01-01", tz="UTC"), spec=spec
    )
    return {str(k): v for k, v in frame.dtypes.items()}


@dataclass(frozen=True)
class BucketFeatures:
    """Features of one bucket at each cutoff (pickled to the executors).

    Attributes:
        spec: The project's feature spec.
        cutoffs: The as-of dates.
    """

    spec: FeatureSpec
    cutoffs: tuple[pd.Timestamp, ...]

    def __call__(self, customers: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        """Features of ``customers`` (one bucket) as of every cutoff, stacked."""
        prepared = prepare_events(customers, events)
        parts = []
        for ts in self.cutoffs:
            frame = prepared.build_features(ts, spec=self.spec)
            frame[AS_OF_COLUMN] = as_of_label(ts)
            parts.append(frame)
        return pd.concat(parts, ignore_index=True)


def features_frame(
    facts: SparkFacts, spec: FeatureSpec, cutoffs: Sequence[pd.Timestamp], buckets: int
) -> DataFrame:
    """The Spark DataFrame of features at every cutoff (column ``as_of`` = the label)."""
    dtypes = feature_dtypes(spec, facts.customer_dtypes, facts.event_dtypes)
    dtypes[AS_OF_COLUMN] = "string"
    return map_buckets(facts, buckets, BucketFeatures(spec, tuple(cutoffs)), dtypes)


@dataclass(frozen=True)
class FeatureOutput:
    """One written feature snapshot: where, and how many customers."""

    as_of: pd.Timestamp
    uri: str
    rows: int
    n_features: int


def build_features_spark(
    session: SparkSession,
    facts: SparkFacts,
    *,
    spec: FeatureSpec,
    cutoffs: Sequence[pd.Timestamp],
    output: str,
    buckets: int,
    lineage: Mapping[str, Any],
) -> list[FeatureOutput]:
    """Build features at every cutoff and write ``<output>/as_of=<label>/`` folders.

    Args:
        session: The Spark session.
        facts: Customers and events.
        spec: The feature spec.
        cutoffs: As-of dates (UTC).
        output: The features folder (any Hadoop URI).
        buckets: Number of customer hash partitions.
        lineage: Recorded in each folder's ``_tagsmith.json`` (facts fingerprint ...).

    Raises:
        SparkJobError: The job failed (the executor's message, e.g. a schema error).
    """
    frame = features_frame(facts, spec, cutoffs, buckets)
    files = HadoopFiles(session)
    temp = files.temp_sibling(output)
    try:
        with job_errors("features build"):
            frame.write.partitionBy(AS_OF_COLUMN).parquet(temp)
            written = session.read.parquet(temp)
            counts = {
                str(r[AS_OF_COLUMN]): int(r["count"])
                for r in written.groupBy(AS_OF_COLUMN).count().collect()
            }
        n_features = len(frame.columns) - 2  # customer_id and as_of
        out = []
        for ts in cutoffs:
            label = as_of_label(ts)
            target = f"{output.rstrip('/')}/{AS_OF_COLUMN}={label}"
            source = f"{temp}/{AS_OF_COLUMN}={label}"
            rows = counts.get(label, 0)
            if rows == 0:  # nobody signed up yet: an empty, readable snapshot
                session.createDataFrame([], frame.drop(AS_OF_COLUMN).schema).write.parquet(source)
            files.write_json(
                f"{source}/_tagsmith.json",
                {
                    "as_of": ts.isoformat(),
                    "rows": rows,
                    "spec_hash": spec_hash(spec),
                    **lineage,
                },
            )
            files.replace(source, target)
            out.append(FeatureOutput(ts, target, rows, n_features))
        return out
    finally:
        files.delete(temp)
