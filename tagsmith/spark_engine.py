"""Wiring of the Spark engine (``--engine spark``) to a project.

The project decides what Spark reads (the fact store's Parquet files, or the paths in
``spark:``), where outputs go (``spark.output_dir``, under the data folder unless it is
a URI) and which spec, catalogue and champions run; the ``spark`` package does the rest.

pandas and the fact schema are imported by the functions that use them: CLI modules
import this one for ``ENGINES`` (an option's choices), and that must not cost them the
array libraries (see ``tests/tagsmith/test_cli_startup.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spark.errors import SparkError
from tagsmith.errors import ConfigError
from tagsmith.project import Project

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from features.spec import FeatureSpec
    from scoring.batch import EngineOutput, Predictor
    from spark.facts import SparkFacts
    from spark.features import FeatureOutput
    from spark.tagging import SparkTagRun
    from tags.catalogue import Catalogue

__all__ = [
    "ENGINES",
    "SparkTagging",
    "build_features",
    "default_cutoff",
    "external_facts",
    "output_uri",
    "project_facts",
    "read_long_table",
    "require_store_lineage",
    "score_population",
    "session_for",
]

ENGINES = ("local", "spark")


def session_for(project: Project, master: str | None) -> SparkSession:
    """The Spark session of ``project`` (``master`` overrides ``spark.master``)."""
    from spark.session import start_session

    return start_session(project.config.spark, master=master)


def output_uri(project: Project, *parts: str) -> str:
    """``spark.output_dir`` (a URI, or a folder under the data folder) joined with parts."""
    base = project.config.spark.output_dir
    if "://" not in base:
        base = str((project.data_dir / base).resolve())
    return "/".join([base.rstrip("/"), *parts])


def project_facts(
    project: Project,
    session: SparkSession,
    *,
    event_columns: Sequence[str] | None = None,
    live: bool = False,
) -> SparkFacts:
    """The project's facts as Spark DataFrames (``live``: plus the live event log).

    ``event_columns`` defaults to the columns the feature builder reads.

    Raises:
        SparkError: No facts (nothing imported and no ``spark`` paths configured).
    """
    from features.events import FEATURE_EVENT_COLUMNS
    from features.schema import EVENT_DTYPES, customer_dtypes
    from spark.facts import read_facts

    if event_columns is None:
        event_columns = FEATURE_EVENT_COLUMNS

    cfg = project.config.spark
    store = project.fact_store()
    customers = cfg.customers_path or str(store.customers_path)
    # The store's events file and the segments later imports appended, all of them.
    stored = [str(path) for path in store.event_paths()] or [str(store.events_path)]
    events = [cfg.events_path] if cfg.events_path else stored
    if cfg.customers_path is None and not store.customers_path.is_file():
        raise SparkError(
            f"Expected imported facts in {store.customers_path.parent} (run 'tagsmith facts "
            "import') or spark.customers_path / spark.events_path in tagsmith.yaml. Got none."
        )
    if live:
        events += [str(p) for p in project.live_events().segments()]
    return read_facts(
        session,
        customers=[customers],
        events=events,
        customer_dtypes=customer_dtypes(project.config.facts),
        event_dtypes={c: EVENT_DTYPES[c] for c in event_columns},
    )


def build_features(
    project: Project, cutoffs: Sequence[pd.Timestamp], *, master: str | None = None
) -> list[FeatureOutput]:
    """``features build --engine spark``: Parquet snapshots under ``<output>/features``."""
    from spark.facts import bucket_count
    from spark.features import build_features_spark

    cfg = project.config.spark
    session = session_for(project, master)
    facts = project_facts(project, session)
    fingerprint = project.fact_store().fingerprint() if cfg.customers_path is None else "external"
    buckets = bucket_count(
        session, facts, partitions=cfg.partitions, per_partition=cfg.customers_per_partition
    )
    return build_features_spark(
        session,
        facts,
        spec=project.feature_spec(),
        cutoffs=cutoffs,
        output=output_uri(project, "features"),
        buckets=buckets,
        lineage={"facts_fingerprint": fingerprint, "partitions": buckets},
    )


class SparkTagging:
    """``tags run --engine spark`` (a ``scoring.batch.TaggingEngine``).

    Args:
        project: The project (facts, output folder, ``spark:`` settings).
        master: Spark master overriding ``spark.master``.
    """

    name = "spark"

    def __init__(self, project: Project, master: str | None = None) -> None:
        self.project = project
        self.master = master
        self.last: SparkTagRun | None = None

    def compute(
        self,
        *,
        cutoff: pd.Timestamp,
        spec: FeatureSpec,
        catalogue: Catalogue,
        predictors: Sequence[Predictor],
    ) -> SparkTagRun:
        """Run the Spark job; the long table stays in Parquet (``run.uri``)."""
        from spark.facts import bucket_count
        from spark.tagging import run_tags_spark

        cfg = self.project.config.spark
        session = session_for(self.project, self.master)
        facts = project_facts(self.project, session, live=cfg.events_path is None)
        buckets = bucket_count(
            session, facts, partitions=cfg.partitions, per_partition=cfg.customers_per_partition
        )
        self.last = run_tags_spark(
            session,
            facts,
            spec=spec,
            catalogue=catalogue,
            cutoff=cutoff,
            predictors=predictors,
            output=output_uri(self.project, "tags"),
            buckets=buckets,
        )
        return self.last

    def tag(
        self,
        *,
        cutoff: pd.Timestamp,
        spec: FeatureSpec,
        catalogue: Catalogue,
        predictors: Sequence[Predictor],
    ) -> EngineOutput:
        """Run the Spark job and read its long table back for the tag store."""
        from scoring.batch import EngineOutput

        run = self.compute(cutoff=cutoff, spec=spec, catalogue=catalogue, predictors=predictors)
        start = time.perf_counter()
        long = read_long_table(session_for(self.project, self.master), run.uri)
        timings = {**run.timings, "read back": round(time.perf_counter() - start, 3)}
        thresholds = {
            tag: {text: (v if v == v else None) for text, v in values.items()}
            for tag, values in run.thresholds.items()
        }
        return EngineOutput(long, run.n_customers, thresholds, timings)


def read_long_table(session: SparkSession, uri: str) -> pd.DataFrame:
    """The long tag table of one date from its Parquet folder (any Hadoop URI)."""
    import pandas as pd

    if "://" not in uri:
        return pd.read_parquet(uri)
    return session.read.parquet(uri).toArrow().to_pandas()


def score_population(
    project: Project,
    score: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    dtypes: dict[str, Any],
    out: str,
    *,
    column: str,
    master: str | None = None,
) -> dict[str, float]:
    """``predict --engine spark``: ``score(customers, events)`` per customer bucket,
    written as a Parquet folder at ``out``; count, mean, median and max of ``column``."""
    from pyspark.sql import functions as F

    from spark.facts import bucket_count, map_buckets
    from spark.session import job_errors
    from spark.storage import write_parquet

    cfg = project.config.spark
    session = session_for(project, master)
    facts = project_facts(project, session)
    buckets = bucket_count(
        session, facts, partitions=cfg.partitions, per_partition=cfg.customers_per_partition
    )
    with job_errors("predict"):
        write_parquet(map_buckets(facts, buckets, score, dtypes), out)
        row = (
            session.read.parquet(out)
            .agg(
                F.count(column).alias("rows"),
                F.avg(column).alias("mean"),
                F.percentile(F.col(column), F.lit(0.5)).alias("median"),
                F.max(column).alias("max"),
            )
            .collect()[0]
        )
    return {k: float(v) if v is not None else float("nan") for k, v in row.asDict().items()}


def external_facts(project: Project) -> bool:
    """Whether ``spark:`` points at facts outside the fact store."""
    cfg = project.config.spark
    return cfg.customers_path is not None or cfg.events_path is not None


def default_cutoff(project: Project, master: str | None = None) -> pd.Timestamp:
    """The day after the last event (UTC midnight): the fact store's manifest, or a
    Spark ``max(occurred_at)`` over ``spark.events_path``."""
    import pandas as pd

    if project.config.spark.events_path is None:
        last = project.fact_store().last_event_at()
    else:
        from pyspark.sql import functions as F

        session = session_for(project, master)
        facts = project_facts(project, session)
        value = facts.events.agg(F.max("occurred_at")).collect()[0][0]
        if value is None:
            raise SparkError(f"Expected events in {project.config.spark.events_path}. Got none.")
        last = pd.Timestamp(value)
    last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
    return last.normalize() + pd.Timedelta(days=1)


def require_store_lineage(project: Project) -> None:
    """Refuse recording a run on external facts in the tag store (its lineage would
    name the fact store, which did not produce it).

    Raises:
        ConfigError: ``spark.customers_path``/``events_path`` with ``tag_store: store``.
    """
    if external_facts(project) and project.config.spark.tag_store == "store":
        raise ConfigError(
            f"{project.config_path}: expected 'spark.tag_store: parquet' when "
            "spark.customers_path / spark.events_path are set (the tag store records runs "
            "of the fact store). Got tag_store: store."
        )
