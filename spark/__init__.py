"""The Spark engine: the same features, rule tags and predicted tags on a cluster.

Customers are hash-partitioned and every partition runs the project's own pure code
(``features`` builder, ``tags`` rule evaluator, ``scoring`` champion predictors) through
``mapInArrow``; population aggregates (medians, quantiles) are computed over all
customers first and pinned. ``tagsmith`` wires it to the CLI (``--engine spark``).
pyspark is imported only inside the functions that need it.
"""

from __future__ import annotations

from spark.config import SparkConfig
from spark.errors import SparkError, SparkJobError

__all__ = ["SparkConfig", "SparkError", "SparkJobError"]
