"""``tagsmith features``: build feature snapshots, show one customer, list the catalogue.

``features list`` needs only the spec: the array libraries and the stores are imported
by the commands that read data, so listing starts in a fraction of a second.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click
from rich.table import Table

from features.catalog import feature_catalog
from features.spec import FeatureSpec, spec_hash
from tagsmith.cli._common import console, emit_json, format_option, pass_project
from tagsmith.project import Project
from tagsmith.spark_engine import ENGINES

if TYPE_CHECKING:
    import pandas as pd

    from features.snapshots import FeatureStore
    from features.store import FactStore


def default_as_of(store: FactStore) -> pd.Timestamp:
    """The day after the last event (UTC midnight): every stored event counts."""
    import pandas as pd

    return store.last_event_at().tz_convert("UTC").normalize() + pd.Timedelta(days=1)


@click.group()
def features() -> None:
    """Point-in-time behaviour features: build snapshots, show a customer, list them."""


@features.command("build")
@click.option(
    "--as-of",
    "as_of",
    multiple=True,
    metavar="DATE",
    help="Cutoff (UTC; repeat for several). Only events before it count. "
    "Default: the day after the last stored event.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: this process, into the feature store; spark: partitioned Parquet under "
    "spark.output_dir (README, 'More than one machine').",
)
@click.option(
    "--master",
    default=None,
    metavar="URL",
    help="Spark master for --engine spark (default: spark.master, local[*]).",
)
@pass_project
def build(project: Project, as_of: tuple[str, ...], engine: str, master: str | None) -> None:
    """Compute features as of each DATE and write one snapshot per date atomically."""
    import pandas as pd
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from features.cutoffs import normalize_as_of
    from features.events import FEATURE_EVENT_COLUMNS, prepare_events
    from features.memory import lean_allocators
    from tagsmith.spark_engine import default_cutoff as spark_default_cutoff

    lean_allocators()
    if engine == "spark":
        cutoffs = sorted({normalize_as_of(v) for v in as_of}) or [
            spark_default_cutoff(project, master)
        ]
        _build_on_spark(project, cutoffs, master)
        return
    facts = project.fact_store()
    spec = project.feature_spec()
    cutoffs = sorted({normalize_as_of(v) for v in as_of}) or [default_as_of(facts)]
    fingerprint = facts.fingerprint()
    store = project.feature_store()
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("loading facts", total=len(cutoffs) + 1)
        customers = facts.load_customers()
        events = facts.load_events(columns=list(FEATURE_EVENT_COLUMNS))
        progress.update(task, description="preparing events")
        prepared = prepare_events(customers, events)
        del events
        progress.update(task, advance=1, description=f"as of {cutoffs[0].date()}")
        written = []
        for k, ts in enumerate(cutoffs):
            frame = prepared.build_features(ts, spec=spec, release=k == len(cutoffs) - 1)
            path = store.write(
                frame,
                as_of=ts,
                spec_hash=spec_hash(spec),
                facts_fingerprint=fingerprint,
                created_at=pd.Timestamp.now(tz="UTC"),
            )
            written.append((ts, len(frame), frame.shape[1] - 1, path))
            following = cutoffs[k + 1].date() if k + 1 < len(cutoffs) else "done"
            progress.update(task, advance=1, description=f"as of {following}")
    for ts, rows, n_features, path in written:
        console.print(
            f"features as of {ts.isoformat()}: {rows:,} customers x {n_features} features -> {path}"
        )
    console.print(f"spec {spec_hash(spec)}, facts {fingerprint[:16]}")


def _build_on_spark(project: Project, cutoffs: list[pd.Timestamp], master: str | None) -> None:
    from tagsmith.spark_engine import build_features as spark_build_features

    with console.status("Building features on Spark", spinner="dots"):
        written = spark_build_features(project, cutoffs, master=master)
    for out in written:
        console.print(
            f"features as of {out.as_of.isoformat()}: {out.rows:,} customers x "
            f"{out.n_features} features -> {out.uri}"
        )
    console.print(f"spec {spec_hash(project.feature_spec())} (engine spark)")


@features.command("show")
@click.argument("customer_id")
@click.option(
    "--as-of",
    "as_of",
    metavar="DATE",
    help="Cutoff (UTC). Default: the latest snapshot, else the day after the last event.",
)
@format_option
@pass_project
def show(project: Project, customer_id: str, as_of: str | None, fmt: str) -> None:
    """Print one customer's features with their units and definitions.

    Reads the snapshot of that date when it is current (same spec and facts),
    otherwise computes the features from the fact store.
    """
    from features.cutoffs import normalize_as_of
    from features.errors import StoreError
    from features.events import FEATURE_EVENT_COLUMNS, prepare_events

    spec = project.feature_spec()
    facts = project.fact_store()
    store = project.feature_store()
    ts = normalize_as_of(as_of) if as_of else store.latest_as_of() or default_as_of(facts)
    row = _snapshot_row(store, facts, spec, ts, customer_id)
    source = "snapshot"
    if row is None:
        source = "computed from the fact store"
        customers = facts.load_customers()
        customers = customers[customers["customer_id"] == customer_id].reset_index(drop=True)
        if customers.empty:
            raise StoreError(f"Expected a customer {customer_id!r} in the fact store. Got none.")
        # Filtered reads of the events file and every appended segment.
        events = facts.load_customer(customer_id)[1][list(FEATURE_EVENT_COLUMNS)]
        frame = prepare_events(customers, events).build_features(ts, spec=spec)
        if frame.empty:
            raise StoreError(
                f"Expected customer {customer_id!r} to have signed up before "
                f"{ts.isoformat()}. Got signup_at {customers['signup_at'].iloc[0].isoformat()}."
            )
        row = frame.iloc[0]
    if fmt == "json":
        emit_json(
            {
                "customer_id": customer_id,
                "as_of": ts,
                "source": source,
                "features": {info.name: row[info.name] for info in feature_catalog(spec)},
            }
        )
        return
    table = Table(title=f"{customer_id} as of {ts.isoformat()} ({source})")
    for column in ("feature", "value", "unit", "description"):
        table.add_column(column, overflow="fold")
    for info in feature_catalog(spec):
        table.add_row(info.name, _fmt(row[info.name]), info.unit, info.description)
    console.print(table)


def _snapshot_row(
    store: FeatureStore, facts: FactStore, spec: FeatureSpec, ts: pd.Timestamp, customer_id: str
) -> pd.Series | None:
    if not store.path_for(ts).is_file():
        return None
    meta = store.meta(ts)
    if meta["spec_hash"] != spec_hash(spec) or meta["facts_fingerprint"] != facts.fingerprint():
        return None
    rows = store.read(ts, customer_id=customer_id)
    return None if rows.empty else rows.iloc[0]


def _fmt(value: object) -> str:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.floating):  # float32 features
        value = float(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


@features.command("list")
@format_option
@pass_project
def list_(project: Project, fmt: str) -> None:
    """Print the feature catalogue of the project's spec."""
    spec = project.feature_spec()
    catalogue = feature_catalog(spec)
    if fmt == "json":
        emit_json(catalogue)
        return
    table = Table(title=f"{len(catalogue)} features (spec {spec_hash(spec)})")
    for column in ("name", "family", "dtype", "unit", "description"):
        table.add_column(column, overflow="fold")
    for info in catalogue:
        table.add_row(info.name, info.family, info.dtype, info.unit, info.description)
    console.print(table)
