"""The ``spark:`` section of ``tagsmith.yaml``: where and how the Spark engine runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SparkConfig"]


class SparkConfig(BaseModel):
    """Settings of ``--engine spark`` (``features build``, ``tags run``).

    Attributes:
        master: Spark master URL (``--master`` overrides it): ``local[*]``, ``yarn``,
            ``k8s://https://host:443``, ``spark://host:7077``.
        app_name: The application name shown by the cluster manager.
        partitions: Number of customer hash partitions; ``None`` picks
            ``max(2 x default parallelism, customers / customers_per_partition)``.
        customers_per_partition: Target partition size when ``partitions`` is not set
            (each partition is one pandas call, so this bounds an executor's memory).
        output_dir: Where partitioned Parquet outputs go: a folder relative to the
            project's data folder, or any Hadoop-filesystem URI (``hdfs://``, ``s3a://``).
        customers_path: Read customers from this Parquet path instead of the fact store.
        events_path: Read events from this Parquet path instead of the fact store.
        tag_store: ``store`` records ``tags run`` in the tag store like a local run;
            ``parquet`` leaves the long tag table in Parquet only (data that does not
            fit one machine).
        conf: Extra Spark settings (``spark.executor.memory: 8g`` ...), passed as given.
    """

    model_config = ConfigDict(extra="forbid")

    master: str = "local[*]"
    app_name: str = "tagsmith"
    partitions: int | None = Field(default=None, ge=1, le=100_000)
    customers_per_partition: int = Field(default=200_000, ge=1)
    output_dir: str = "spark"
    customers_path: str | None = None
    events_path: str | None = None
    tag_store: Literal["store", "parquet"] = "store"
    conf: dict[str, str] = Field(default_factory=dict)
