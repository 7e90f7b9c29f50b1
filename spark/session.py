"""Starting Spark for Tagsmith, and turning a failed job into one clear message.

The Python workers must run the driver's interpreter (``PYSPARK_PYTHON``), which has
Tagsmith and its pinned libraries installed; on a cluster, ship the same environment
(README, "More than one machine").
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from spark.config import SparkConfig
from spark.errors import SparkJobError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["job_errors", "local_cores", "session_settings", "start_session"]

# The last "package.module.SomeError: message" line of an executor's traceback.
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def session_settings(config: SparkConfig, master: str) -> dict[str, str]:
    """The Spark settings of a session: ours first, then the project's ``conf``.

    A local master binds to 127.0.0.1 and every master runs without the web UI, in
    UTC (timestamps cross into pandas as UTC wall-clock times) and with Arrow
    transfers to pandas in batches of 100,000 rows (not 10,000: one partition is
    hundreds of thousands of events, and each batch is a round trip). On a local
    master the shuffles after the customer partitioning (population aggregates) get
    two partitions per core instead of Spark's 200, whose per-task cost dominated them.
    """
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        "spark.sql.adaptive.enabled": "true",
        "spark.python.worker.reuse": "true",
    }
    if master.startswith("local"):
        settings["spark.driver.host"] = "127.0.0.1"
        settings["spark.driver.bindAddress"] = "127.0.0.1"
    cores = local_cores(master)
    if cores is not None:
        settings["spark.sql.shuffle.partitions"] = str(2 * cores)
    settings.update(config.conf)
    return settings


def local_cores(master: str) -> int | None:
    """The cores of a local master: ``local`` 1, ``local[N]`` N, ``local[*]`` all
    (``None`` for any other master, e.g. ``local-cluster[...]`` or ``yarn``)."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if found is None:
        return None
    if found.group(1) is None:
        return 1
    if found.group(1) == "*":
        return max(1, os.cpu_count() or 1)
    return max(1, int(found.group(1)))


def start_session(
    config: SparkConfig, *, master: str | None = None, extra: Mapping[str, str] | None = None
) -> SparkSession:
    """A Spark session for ``config`` (``master`` overrides ``config.master``).

    Raises:
        SparkError: pyspark is not installed, or Spark (Java) does not start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkJobError(
            "Expected pyspark to be installed for --engine spark (pip install "
            f"'tagsmith[spark]'). Got: {exc}."
        ) from exc
    # Under spark-submit the gateway exists already and spark-submit's --master and
    # settings rule unless --master is given; the workers' Python comes from there too.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ and master is None
    master = master or config.master
    builder = SparkSession.builder.appName(config.app_name)
    if not submitted:
        builder = builder.master(master)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = session_settings(config, "submitted" if submitted else master)
    for key, value in {**settings, **(extra or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # Java missing or the master unreachable
        raise SparkJobError(
            f"Expected Spark to start on master {master!r} (Java 17 on PATH or JAVA_HOME). "
            f"Got {type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session


def executor_message(text: str) -> str:
    """The last ``SomeError: message`` line of an executor traceback (else the last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _ERROR_LINE.match(line)
        if found and "py4j" not in found.group(1).lower():
            name = found.group(1).rsplit(".", 1)[-1]
            return f"{name}: {found.group(2)}"
    return lines[-1] if lines else "unknown error"


@contextmanager
def job_errors(what: str) -> Iterator[None]:
    """Re-raise a failed Spark job as :class:`SparkJobError` naming ``what`` failed."""
    try:
        yield
    except SparkJobError:
        raise
    except Exception as exc:
        module = type(exc).__module__
        if not module.startswith(("pyspark", "py4j")):
            raise
        raise SparkJobError(f"Spark job '{what}' failed: {executor_message(str(exc))}") from exc
