"""``tagsmith facts``: import customers and events with validation; summarise the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.table import Table

from features.importer import ImportReport, SourceOptions, import_facts
from features.io import parse_mapping
from tagsmith.cli._common import console, pass_project
from tagsmith.erasure import erased_matcher
from tagsmith.project import Project

_DELIMITERS: dict[str, Any] = {
    "comma": ",",
    "tab": "\t",
    "semicolon": ";",
    "pipe": "|",
    "whitespace": "whitespace",
}


@click.group()
def facts() -> None:
    """Fact tags: import customers and events (validated, quarantined), show the store."""


def _source_options(
    mapping: str | None,
    date_format: str | None,
    delimiter: str | None,
    header: bool | None,
    encoding: str | None,
    event_type: str | None = None,
    dedupe: str = "auto",
) -> SourceOptions:
    return SourceOptions(
        mapping=parse_mapping(mapping),
        date_format=date_format,
        delimiter=_DELIMITERS[delimiter] if delimiter else None,
        header=header,
        encoding=encoding,
        event_type=event_type,
        dedupe="exact" if dedupe == "exact" else "auto",
    )


@facts.command("import")
@click.option(
    "--events",
    "events",
    type=click.Path(path_type=Path),
    help="Events file (CSV or Parquet) or a folder of them.",
)
@click.option(
    "--customers",
    "customers",
    type=click.Path(path_type=Path),
    help="Customers file (CSV or Parquet) or a folder of them; imported first.",
)
@click.option(
    "--map",
    "mapping",
    metavar="TARGET=SOURCE,...",
    help="Events columns: canonical name = file column name or 0-based position "
    "(headerless files: 0,1,2 or col0,col1,...). Example: customer_id=0,occurred_at=1.",
)
@click.option(
    "--customers-map",
    "customers_mapping",
    metavar="TARGET=SOURCE,...",
    help="Like --map, for the customers file.",
)
@click.option(
    "--event-type",
    "event_type",
    metavar="TYPE",
    help="Event type of every row when the events file has no event_type column "
    "(also fills blank values), e.g. purchase.",
)
@click.option(
    "--date-format",
    "date_format",
    metavar="FMT",
    help="strptime format of timestamps, e.g. %Y%m%d (default: ISO 8601).",
)
@click.option(
    "--delimiter",
    type=click.Choice(sorted(_DELIMITERS)),
    help="Field separator (default: sniffed from the first lines).",
)
@click.option(
    "--header/--no-header",
    default=None,
    help="Whether the first line names the columns (default: sniffed).",
)
@click.option(
    "--encoding",
    metavar="CODEC",
    help="Text encoding (default: UTF-8, UTF-8 with BOM, UTF-16 with BOM, else GBK).",
)
@click.option(
    "--dedupe",
    type=click.Choice(["auto", "exact"]),
    default="auto",
    show_default=True,
    help="Identical event rows: auto keeps those without an order_id as separate events "
    "(two purchases of the same amount on one day); exact drops every identical repeat.",
)
@click.option(
    "--derive-customers/--no-derive-customers",
    "derive",
    default=None,
    help="Create customers from events (signup = first event). Default: only "
    "when no --customers is given and the store has no customers yet.",
)
@pass_project
def import_(
    project: Project,
    events: Path | None,
    customers: Path | None,
    mapping: str | None,
    customers_mapping: str | None,
    event_type: str | None,
    date_format: str | None,
    delimiter: str | None,
    header: bool | None,
    encoding: str | None,
    dedupe: str,
    derive: bool | None,
) -> None:
    """Validate files and add the rows that pass to the fact store; quarantine the rest.

    A bare transaction log imports with flags alone, e.g. the CDNOW format
    (headerless, whitespace-separated: customer date quantity amount):

    \b
      tagsmith facts import --events cdnow.txt
        --map customer_id=0,occurred_at=1,quantity=2,amount=3
        --event-type purchase --date-format %Y%m%d
    """
    report = import_facts(
        project.fact_store(),
        config=project.config.facts,
        quarantine_dir=project.quarantine_dir,
        now=pd.Timestamp.now(tz="UTC"),
        events=events,
        customers=customers,
        events_options=_source_options(
            mapping, date_format, delimiter, header, encoding, event_type, dedupe
        ),
        customers_options=_source_options(
            customers_mapping, date_format, delimiter, header, encoding
        ),
        derive_customers=derive,
        erased=erased_matcher(project),
    )
    _print_report(report)


def _print_report(report: ImportReport) -> None:
    table = Table(title=f"Import {report.import_id}", title_justify="left")
    table.add_column("file", no_wrap=True)
    table.add_column("kind")
    for name in ("rows read", "accepted", "quarantined"):
        table.add_column(name, justify="right")
    for counts in report.files:
        table.add_row(
            Path(counts.source).name,
            counts.kind,
            f"{counts.rows_read:,}",
            f"{counts.accepted:,}",
            f"{counts.total_quarantined:,}",
        )
    console.print(table)
    for counts in report.files:
        console.print(f"Read {counts.source} as {counts.dialect}", soft_wrap=True)
    reasons = report.quarantined_by_reason
    if reasons:
        by_reason = Table(title="Quarantined rows by reason", title_justify="left")
        by_reason.add_column("reason")
        by_reason.add_column("rows", justify="right")
        for reason, n in reasons.items():
            by_reason.add_row(reason, f"{n:,}")
        console.print(by_reason)
        console.print(f"Quarantine file: {report.quarantine_path}", soft_wrap=True)
    else:
        console.print("No row quarantined.")
    if report.customers_derived:
        console.print(
            f"Customers derived from events (no customers file; signup = first event): "
            f"{report.customers_derived:,}"
        )
    else:
        console.print("Customers derived from events: none")
    if report.customers_created:
        console.print(
            f"Customers created for unknown ids (facts.unknown_customer: create): "
            f"{report.customers_created:,}"
        )
    if report.identical_kept:
        console.print(
            f"{report.identical_kept:,} identical rows kept as separate events (no order_id; "
            "--dedupe exact drops them)."
        )
    if report.repeated_files:
        console.print(
            "Already imported before (same bytes): "
            + ", ".join(Path(s).name for s in report.repeated_files)
            + f"; {report.events_added:,} new events added."
        )
    console.print(
        f"Added {report.customers_added:,} customers and {report.events_added:,} events. "
        f"Store now: {report.store['customers']:,} customers, {report.store['events']:,} events."
    )


@facts.command()
@click.option(
    "--imports",
    "n_imports",
    default=10,
    show_default=True,
    help="How many of the latest import-log entries to show.",
)
@pass_project
def summary(project: Project, n_imports: int) -> None:
    """Counts, date range, event types and the import log of the fact store."""
    store = project.fact_store()
    manifest = store.manifest()
    if not manifest:
        console.print(
            f"The fact store in {project.facts_dir} is empty: "
            "run 'tagsmith facts import --events FILE'.",
            soft_wrap=True,
        )
        return
    overview = Table(
        title=f"Fact store {project.facts_dir}", title_justify="left", show_header=False
    )
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("customers", f"{manifest['customers']:,}")
    overview.add_row("events", f"{manifest['events']:,}")
    overview.add_row("first event", str(manifest["first_event_at"]))
    overview.add_row("last event", str(manifest["last_event_at"]))
    overview.add_row("fingerprint", manifest["fingerprint"][:16])
    full_log = store.import_log()
    derived = int(full_log["derived_customers"].fillna(0).sum()) if len(full_log) else 0
    if derived:
        overview.add_row("customers derived from events", f"{derived:,}")
    console.print(overview)
    types = Table(title="Events by type", title_justify="left")
    types.add_column("event type")
    types.add_column("events", justify="right")
    for name, n in manifest["event_types"].items():
        types.add_row(name, f"{n:,}")
    console.print(types)
    log = full_log.tail(n_imports)
    imports = Table(title="Import log (latest first)", title_justify="left")
    for name in ("time", "kind", "source", "read", "accepted", "quarantined"):
        imports.add_column(
            name,
            justify="right" if name in ("read", "accepted", "quarantined") else "left",
            no_wrap=name in ("time", "source"),
        )
    for row in log.iloc[::-1].itertuples():
        imports.add_row(
            pd.Timestamp(str(row.imported_at)).strftime("%Y-%m-%d %H:%M:%S"),
            str(row.kind),
            Path(str(row.source)).name,
            f"{row.rows_read:,}",
            f"{row.accepted:,}",
            f"{row.quarantined:,}",
        )
    console.print(imports)
