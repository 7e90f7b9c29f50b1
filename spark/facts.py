"""Facts as Spark DataFrames, hash-partitioned by customer.

Customers and their events are stacked into one frame and hash-partitioned by customer
id in a single shuffle, so every Spark partition holds whole customers with all their
events: one Python call per partition (``mapInArrow``) runs the project's own feature
builder and rule evaluator unchanged. No sort and no per-group cogroup is needed, and a
job with several passes (population aggregates, then tags) persists the partitioned
frame once and reuses it instead of shuffling every event again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from spark.errors import SparkError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "PartitionedFacts",
    "SparkFacts",
    "bucket_count",
    "map_buckets",
    "map_partitions",
    "map_to_partitions",
    "partition_facts",
    "read_facts",
]

KEY = "_tagsmith_key"
KIND = "_tagsmith_kind"
# Rows per Arrow batch handed back to Spark: big enough that per-batch overhead is
# negligible, small enough that one batch never holds a whole partition twice over.
OUT_BATCH_ROWS = 100_000


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
    """The number of customer partitions: ``partitions`` or one per ``per_partition``
    customers (at least twice the default parallelism, so every core has work)."""
    if partitions is not None:
        return partitions
    n = facts.customers.count()
    return max(2 * session.sparkContext.defaultParallelism, math.ceil(n / per_partition))


@dataclass(frozen=True)
class PartitionedFacts:
    """Customers and events stacked in one frame, hash-partitioned by customer id.

    Columns are renamed positionally (``c0``.., ``e0``..) so a customer attribute and an
    event column of the same name never clash; ``_tagsmith_kind`` says which a row is.

    Attributes:
        frame: The stacked, partitioned Spark DataFrame.
        customer_dtypes: Customer column -> canonical pandas dtype.
        event_dtypes: Event column -> canonical pandas dtype.
        partitions: Number of partitions.
    """

    frame: DataFrame
    customer_dtypes: Mapping[str, Any]
    event_dtypes: Mapping[str, Any]
    partitions: int

    def persist(self) -> PartitionedFacts:
        """Keep the shuffled frame on the executors' disks for the next passes (disk,
        not memory: it is every event, and the JVM heap is better left to Spark)."""
        from pyspark import StorageLevel

        self.frame.persist(StorageLevel.DISK_ONLY)
        return self

    def unpersist(self) -> None:
        """Drop the persisted copy."""
        self.frame.unpersist()


def partition_facts(facts: SparkFacts, n: int) -> PartitionedFacts:
    """``facts`` stacked and hash-partitioned into ``n`` partitions by customer id (one
    shuffle; the customer id is hashed as text so both sides always agree)."""
    from pyspark.sql import functions as F

    key = F.col("customer_id").cast("string").alias(KEY)
    customers = facts.customers.select(
        key,
        F.lit(0).cast("byte").alias(KIND),
        *[F.col(c).alias(f"c{i}") for i, c in enumerate(facts.customer_dtypes)],
    )
    events = facts.events.select(
        key,
        F.lit(1).cast("byte").alias(KIND),
        *[F.col(c).alias(f"e{i}") for i, c in enumerate(facts.event_dtypes)],
    )
    stacked = customers.unionByName(events, allowMissingColumns=True).repartition(n, KEY)
    return PartitionedFacts(stacked, facts.customer_dtypes, facts.event_dtypes, n)


def _side(table: pa.Table, kind: int, prefix: str, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    import pyarrow.compute as pc

    from spark.frames import coerce

    rows = table.filter(pc.equal(table.column(KIND), kind))
    rows = rows.select([f"{prefix}{i}" for i in range(len(dtypes))]).rename_columns(list(dtypes))
    return coerce(rows.to_pandas(), dtypes)


def _partition(
    batches: Iterable[pa.RecordBatch],
    customer_dtypes: Mapping[str, Any],
    event_dtypes: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """One partition's customers and events in canonical dtypes (``None``: empty)."""
    import pyarrow as pa

    # One partition is whole customers; the pandas code needs all of it at once.
    received = list(batches)
    if not received or not sum(b.num_rows for b in received):
        return None
    table = pa.Table.from_batches(received)
    del received
    return _side(table, 0, "c", customer_dtypes), _side(table, 1, "e", event_dtypes)


def _arrow_schema(session: SparkSession, dtypes: Mapping[str, Any]) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    from spark.frames import spark_schema

    large = session.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false") == "true"
    return to_arrow_schema(spark_schema(dtypes), prefers_large_types=large)


def map_partitions(
    facts: PartitionedFacts,
    fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    dtypes: Mapping[str, Any],
) -> DataFrame:
    """``fn(customers, events)`` on every partition, in canonical dtypes; its rows stacked.

    ``fn`` is pickled to the executors with what it holds (models, catalogue, spec);
    its result must have the columns of ``dtypes``. Results cross back as Arrow
    (categoricals and strings cast to Spark's string type in Arrow, not in Python).
    """
    from spark.frames import spark_schema, to_arrow

    customer_dtypes, event_dtypes = dict(facts.customer_dtypes), dict(facts.event_dtypes)
    columns = list(dtypes)
    arrow_schema = _arrow_schema(facts.frame.sparkSession, dtypes)

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sides = _partition(batches, customer_dtypes, event_dtypes)
        if sides is None:
            return
        out = fn(*sides)[columns]
        del sides
        yield from to_arrow(out, arrow_schema).to_batches(max_chunksize=OUT_BATCH_ROWS)

    return facts.frame.mapInArrow(run, spark_schema(dtypes))


def _stacked_dtypes(
    customer_dtypes: Mapping[str, Any], event_dtypes: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        KIND: "int8",
        **{f"c{i}": dtype for i, dtype in enumerate(customer_dtypes.values())},
        **{f"e{i}": dtype for i, dtype in enumerate(event_dtypes.values())},
    }


def _stack_side(
    frame: pd.DataFrame, kind: int, prefix: str, dtypes: Mapping[str, Any], schema: pa.Schema
) -> pa.Table:
    """``frame`` as rows of the stacked ``schema``: its columns renamed, the other
    side's columns null."""
    import numpy as np
    import pyarrow as pa

    from spark.frames import to_arrow

    names = [f"{prefix}{i}" for i in range(len(dtypes))]
    own = to_arrow(
        frame[list(dtypes)].set_axis(names, axis=1),
        pa.schema([schema.field(name) for name in names]),
    )
    n = len(frame)
    columns = [
        pa.array(np.full(n, kind, dtype="int8"))
        if f.name == KIND
        else own.column(f.name)
        if f.name in names
        else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def map_to_partitions(
    facts: PartitionedFacts,
    fn: Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]],
    customer_dtypes: Mapping[str, Any],
    event_dtypes: Mapping[str, Any],
) -> PartitionedFacts:
    """``fn(customers, events) -> (rows, events)`` on every partition, the result kept
    in the same partitions (no shuffle) for later passes of :func:`map_partitions`.

    ``rows`` (one per customer, e.g. features, with the columns of ``customer_dtypes``)
    take the customers' place and the returned ``events`` (columns of ``event_dtypes``)
    the events', so a pass that needs a customer's rows and events still finds them in
    one partition.
    """
    from spark.frames import spark_schema

    source = (dict(facts.customer_dtypes), dict(facts.event_dtypes))
    stacked = _stacked_dtypes(customer_dtypes, event_dtypes)
    schema = _arrow_schema(facts.frame.sparkSession, stacked)
    rows_dtypes, events_dtypes = dict(customer_dtypes), dict(event_dtypes)

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        sides = _partition(batches, *source)
        if sides is None:
            return
        rows, events = fn(*sides)
        del sides
        table = pa.concat_tables(
            [
                _stack_side(rows, 0, "c", rows_dtypes, schema),
                _stack_side(events, 1, "e", events_dtypes, schema),
            ]
        )
        del rows, events
        yield from table.to_batches(max_chunksize=OUT_BATCH_ROWS)

    frame = facts.frame.mapInArrow(run, spark_schema(stacked))
    return PartitionedFacts(frame, rows_dtypes, events_dtypes, facts.partitions)


def map_buckets(
    facts: SparkFacts,
    buckets: int,
    fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    dtypes: Mapping[str, Any],
) -> DataFrame:
    """One pass of ``fn`` over ``facts`` in ``buckets`` partitions (see
    :func:`map_partitions`; jobs with several passes partition once and reuse it)."""
    return map_partitions(partition_facts(facts, buckets), fn, dtypes)
