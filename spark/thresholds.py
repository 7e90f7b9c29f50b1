"""Population aggregates (``median``, ``quantile``, ``mean``, ``min``, ``max``) over
every customer, not per partition.

Each partition evaluates the tags that use aggregates in collecting mode
(``tags.rules.EvalContext(aggregate_inputs=...)``) and emits the values each aggregate
is computed from; Spark computes the aggregates over all of them (``percentile`` is
exact, interpolating linearly between order statistics as numpy does) and the final
pass pins them. When a tag's population (``scope``) or an aggregate's argument itself
depends on an aggregate, the passes repeat with the previous results pinned until
nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tags.catalogue import Catalogue, CompiledTag
from tags.rules import ast
from tags.rules.context import AggregateInputs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "AGGREGATE_COLUMNS",
    "aggregate_depth",
    "aggregate_rows",
    "aggregate_tags",
    "global_thresholds",
    "needs_rounds",
]

AGGREGATE_COLUMNS = {
    "key": "string",
    "tag_id": "string",
    "text": "string",
    "func": "string",
    "q": "float64",
    "dtype": "string",
    "value": "float64",
}
_AGGREGATES = frozenset({"median", "mean", "min", "max", "quantile"})


def aggregate_tags(catalogue: Catalogue) -> list[str]:
    """Active fact/rule tags with at least one population aggregate."""
    return [
        t.id
        for t in catalogue.active(sources=("fact", "rule"))
        if any(r.uses_aggregates for r in catalogue.compiled(t.id).rules())
    ]


def _children(node: ast.Node) -> Iterator[ast.Node]:
    for value in vars(node).values():
        children = value if isinstance(value, tuple | list) else (value,)
        yield from (child for child in children if isinstance(child, ast.Node))


def _depth(node: ast.Node, lets: Mapping[str, int], population: int) -> int:
    """How many collecting passes make ``node``'s value final: an aggregate is final one
    pass after its argument and its population are; a ``let`` name as its expression."""
    if isinstance(node, ast.Call) and node.func in _AGGREGATES:
        inner = max((_depth(arg, lets, population) for arg in node.args), default=0)
        return 1 + max(inner, population)
    if isinstance(node, ast.Name):
        return lets.get(node.name, 0)
    return max((_depth(child, lets, population) for child in _children(node)), default=0)


def aggregate_depth(compiled: CompiledTag) -> int:
    """The collecting passes the tag's aggregates need (0: it has none).

    Pass k pins the values found by pass k - 1, so after pass k every aggregate whose
    chain of dependencies (through the ``scope`` that is its population, through ``let``
    names, through aggregates nested in its argument) is at most k long is exact. The
    passes therefore stop after this many, without a further pass to confirm that
    nothing changed (it used to cost a whole extra pass over every event).
    """
    # The scope is evaluated over every customer, before any let is bound.
    population = _depth(compiled.scope.tree, {}, 0) if compiled.scope is not None else 0
    lets: dict[str, int] = {}
    for name, rule in compiled.lets:
        lets[name] = _depth(rule.tree, lets, population)
    depth = population
    for rule in compiled.rules():
        if rule is not compiled.scope:  # its own aggregates are counted above
            depth = max(depth, _depth(rule.tree, lets, population))
    return depth


def needs_rounds(compiled: CompiledTag) -> bool:
    """Whether an aggregate of the tag depends on another aggregate (through its
    population or a ``let`` name), so one collecting pass is not enough."""
    return aggregate_depth(compiled) > 1


def aggregate_rows(inputs: AggregateInputs) -> pd.DataFrame:
    """One row per collected value, plus one null row per aggregate (so an aggregate
    whose population is empty everywhere is still known, and comes out null)."""
    parts = []
    for (tag_id, text), (func, q, values) in inputs.items():
        value = pd.Series(np.append(values.astype("float64"), np.nan), dtype="float64")
        parts.append(
            pd.DataFrame(
                {
                    "key": f"{tag_id}\x1f{text}",
                    "tag_id": tag_id,
                    "text": text,
                    "func": func,
                    "q": math.nan if q is None else q,
                    "dtype": str(values.dtype),
                    "value": value.where(value.notna(), None),
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in AGGREGATE_COLUMNS.items()})
    return pd.concat(parts, ignore_index=True)


def _positions(func: str, n: int, q: float) -> list[int]:
    """0-based ranks of the order statistics numpy's median/quantile read."""
    if func == "median":
        return [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    low = math.floor((n - 1) * q)
    return [low, min(low + 1, n - 1)]


def _numpy_value(func: str, n: int, q: float, dtype: str, stats: list[float]) -> float:
    """What numpy computes from these order statistics, in the values' own dtype."""
    values = np.array(stats, dtype=dtype)
    if func == "median":
        return float(values[0] if n % 2 else np.median(values))
    virtual = (n - 1) * q
    gamma = virtual - math.floor(virtual)
    # On two values at virtual index gamma numpy interpolates exactly as it does at
    # (n - 1) * q on all of them (same endpoints, same weight, same dtype).
    return float(np.quantile(values, gamma))


def global_thresholds(rows: DataFrame) -> dict[str, dict[str, float]]:
    """tag id -> aggregate text -> its value over every partition's rows (NaN: empty).

    Counts, means, minima and maxima are Spark aggregates; medians and quantiles read
    the order statistics numpy would (ranked by a window per aggregate) and
    interpolate them with numpy, so float32 features give float32 medians as locally.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    stats = {
        r["key"]: r.asDict()
        for r in rows.groupBy("key")
        .agg(
            *[F.first(c).alias(c) for c in ("tag_id", "text", "func", "q", "dtype")],
            F.count("value").alias("n"),
            F.avg("value").alias("mean"),
            F.min("value").alias("min"),
            F.max("value").alias("max"),
        )
        .collect()
    }
    wanted = [
        (key, i)
        for key, r in stats.items()
        if r["n"] and r["func"] in ("median", "quantile")
        for i in _positions(r["func"], r["n"], r["q"])
    ]
    found: dict[tuple[str, int], float] = {}
    if wanted:
        session = rows.sparkSession
        ranked = rows.where(F.col("value").isNotNull()).withColumn(
            "i", F.row_number().over(Window.partitionBy("key").orderBy("value")) - 1
        )
        targets = session.createDataFrame(wanted, "key string, i int")
        picked = ranked.join(F.broadcast(targets), ["key", "i"]).select("key", "i", "value")
        for row in picked.collect():
            found[(row["key"], int(row["i"]))] = float(row["value"])
    out: dict[str, dict[str, float]] = {}
    for key, stat in stats.items():
        out.setdefault(stat["tag_id"], {})[stat["text"]] = _value(key, stat, found)
    return out


def _value(key: str, row: Mapping[str, Any], found: Mapping[tuple[str, int], float]) -> float:
    n, func, dtype = int(row["n"]), row["func"], row["dtype"]
    if not n:
        return math.nan
    if func in ("mean", "min", "max"):
        return float(np.array(row[func], dtype=dtype))
    q = float(row["q"]) if func == "quantile" else 0.5
    stats = [found[(key, i)] for i in _positions(func, n, q)]
    return _numpy_value(func, n, q, dtype, stats)
