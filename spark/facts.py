"""Facts as Spark DataFrames, hash-partitioned by customer.

Customers and their events land in the same bucket (``pmod(xxhash64(customer_id),
n)``), so one pandas call per bucket sees every event of its customers and can run the
project's own feature builder and rule evaluator unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from spark.errors import SparkError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["BUCKET", "SparkFacts", "bucket_count", "bucketed", "map_buckets", "read_facts"]

BUCKET = "_tagsmith_bucket"


@dataclass(frozen=True)
class SparkFacts:
    """Customers and events read by Spark, with the canonical customer dtypes.

    Attributes:
        customers: The customers DataFrame.
        events: The events DataFrame (only the columns asked for).
        customer_dtypes: Column -> canonical pandas dtype (``features.schema``).
        event_dtypes: Column -> canonical pandas dtype of the events read.
    """

    customers: DataFrame
    events: DataFrame
    customer_dtypes: Mapping[str, Any]
    event_dtypes: Mapping[str, Any]


def _read(session: SparkSession, paths: Sequence[str], what: str) -> DataFrame:
    try:
        return session.read.parquet(*paths)
    except Exception as exc:  # AnalysisException: path missing or not Parquet
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparkError(
            f"Expected readable Parquet {what} at {', '.join(paths)}. Got: {first}"
        ) from exc


def _require(frame: DataFrame, columns: Sequence[str], what: str, paths: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SparkError(
            f"{', '.join(paths)}: expected {what} columns {list(columns)}. "
            f"Got {frame.columns} (missing {missing})."
        )


def read_facts(
    session: SparkSession,
    *,
    customers: Sequence[str],
    events: Sequence[str],
    customer_dtypes: Mapping[str, Any],
    event_dtypes: Mapping[str, Any],
) -> SparkFacts:
    """Customers and events from Parquet paths (several event paths are unioned).

    Raises:
        SparkError: A path is not readable Parquet or lacks a contract column.
    """
    cust = _read(session, customers, "customers")
    _require(cust, list(customer_dtypes), "customers", customers)
    ev = None
    for path in events:
        part = _read(session, [path], "events")
        _require(part, list(event_dtypes), "events", [path])
        part = part.select(*event_dtypes)
        ev = part if ev is None else ev.unionByName(part)
    assert ev is not None, "at least one events path"
    return SparkFacts(cust.select(*customer_dtypes), ev, customer_dtypes, event_dtypes)


def bucket_count(
    session: SparkSession, facts: SparkFacts, *, partitions: int | None, per_partition: int
) -> int:
    """The number of customer buckets: ``partitions`` or one per ``per_partition``
    customers (at least twice the default parallelism, so every core has work)."""
    if partitions is not None:
        return partitions
    n = facts.customers.count()
    return max(2 * session.sparkContext.defaultParallelism, math.ceil(n / per_partition))


def _bucket_of(n: int) -> Column:
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col("customer_id")), F.lit(n)).cast("int")


def bucketed(facts: SparkFacts, n: int) -> tuple[DataFrame, DataFrame]:
    """(customers, events) each with the bucket column of its customer."""
    return (
        facts.customers.withColumn(BUCKET, _bucket_of(n)),
        facts.events.withColumn(BUCKET, _bucket_of(n)),
    )


def map_buckets(
    facts: SparkFacts,
    buckets: int,
    fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    dtypes: Mapping[str, Any],
) -> DataFrame:
    """``fn(customers, events)`` on every bucket, in canonical dtypes; its rows stacked.

    ``fn`` is pickled to the executors with what it holds (models, catalogue, spec);
    its result must have the columns of ``dtypes`` (categoricals and strings are
    converted for Spark here).
    """
    from spark.frames import coerce, spark_safe, spark_schema

    customer_dtypes, event_dtypes = dict(facts.customer_dtypes), dict(facts.event_dtypes)
    columns = list(dtypes)

    # pyspark tells the (left, right) form from (key, left, right) by the argument
    # count: a plain two-argument function, holding no DataFrame.
    def run(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        if left.empty:
            return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})
        customers = coerce(left.drop(columns=[BUCKET]), customer_dtypes)
        events = coerce(right.drop(columns=[BUCKET]), event_dtypes)
        return spark_safe(fn(customers, events)[columns])

    customers, events = bucketed(facts, buckets)
    return (
        customers.groupBy(BUCKET)
        .cogroup(events.groupBy(BUCKET))
        .applyInPandas(run, schema=spark_schema(dtypes))
    )
