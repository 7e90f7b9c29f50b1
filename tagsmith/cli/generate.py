"""``tagsmith generate``: synthetic customers, events and their latent truth."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.table import Table

from synthetic import generate as generate_data
from synthetic import write_synthetic
from tagsmith.cli._common import CliContext, console, overwrite_option, user_errors
from tagsmith.errors import ConfigError
from tagsmith.outputs import check_output, protected_paths
from tagsmith.project import Project


@click.command()
@click.option(
    "--customers",
    "n_customers",
    type=click.IntRange(min=1),
    required=True,
    help="Number of registered customers.",
)
@click.option("--start", default="2023-01-01", show_default=True, help="First day (UTC).")
@click.option("--end", default="2024-12-31", show_default=True, help="Last day, inclusive.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed writes the same bytes.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for customers, events and truth files (created if missing).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="File format of the written tables.",
)
@overwrite_option
@click.pass_obj
@user_errors
def generate(
    obj: CliContext,
    n_customers: int,
    start: str,
    end: str,
    seed: int,
    out_dir: Path,
    file_format: str,
    overwrite: bool,
) -> None:
    """Write synthetic customers and events (the fact contract) plus a truth file.

    The truth file holds each customer's latent state (purchase rate, spend level,
    leaving and dropout dates) for oracle scoring; it is not imported as facts.
    """
    # generate needs no project, but must not write into one's stores either.
    root = obj.project_dir if obj is not None else Path(".")
    try:
        protected = protected_paths(Project.load(root))
    except ConfigError:  # no project (or an unreadable one) there: nothing to protect
        protected = []
    check_output(
        out_dir,
        overwrite=overwrite,
        protected=protected,
        names=[f"{n}.{file_format}" for n in ("customers", "events", "truth")],
    )
    began = time.perf_counter()
    with console.status("Simulating customers", spinner="dots") as status:

        def progress(message: str) -> None:
            status.update(f"Simulating: {message}")

        data = generate_data(n_customers, start=start, end=end, seed=seed, progress=progress)
        status.update(f"Writing {file_format} files to {out_dir}")
        paths = write_synthetic(
            data, out_dir, file_format="csv" if file_format == "csv" else "parquet"
        )
    elapsed = time.perf_counter() - began

    truth = data.truth
    counts = data.events["event_type"].value_counts()
    table = Table(title=f"Synthetic data (seed {seed})", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("period", f"{start} .. {end}")
    table.add_row("customers", f"{len(data.customers):,}")
    table.add_row("  never buy", f"{int(truth['never_buys'].sum()):,}")
    table.add_row("  started leaving by the end", f"{int(truth['leaving_at'].notna().sum()):,}")
    table.add_row("  dropped out by the end", f"{int(truth['dropout_at'].notna().sum()):,}")
    table.add_row("events", f"{len(data.events):,}")
    for event_type in ("purchase", "refund", "browse", "login", "complaint"):
        table.add_row(f"  {event_type}", f"{int(counts.get(event_type, 0)):,}")
    purchases = data.events["event_type"] == "purchase"
    refunds = data.events["event_type"] == "refund"
    net = data.events.loc[purchases, "amount"].sum() - data.events.loc[refunds, "amount"].sum()
    table.add_row("net spend", f"{net:,.2f}")
    console.print(table)
    for name, path in paths.items():
        console.print(f"  {name:<9} {path}  ({path.stat().st_size / 1e6:,.1f} MB)")
    console.print(f"Done in {elapsed:.1f} s.")
