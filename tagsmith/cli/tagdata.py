"""``tagsmith tags runs|export|history|diff|transitions|report``: reading the tag store.

These commands join the ``tags`` group assembled in :mod:`tagsmith.cli`. Every read goes
through :class:`tags.access.TagReader`: the caller's role filters what is shown and the
read is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.table import Table

from tags.report import render_report
from tagsmith.cli._common import console, day, guard_out, overwrite_option, pass_project
from tagsmith.cli._governance import (
    check_purpose,
    consent_filter,
    lint_findings,
    make_reader,
    purpose_option,
    require,
    resolve_role,
    role_option,
)
from tagsmith.outputs import write_atomic
from tagsmith.project import Project

__all__ = ["COMMANDS"]


def _tag_list(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


def _text(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else str(value)


@click.command("runs")
@click.option("--last", type=click.IntRange(min=1), default=10, show_default=True)
@role_option
@pass_project
def runs_cmd(project: Project, last: int, role: str | None) -> None:
    """List tagging runs: id, as-of date, status, counts, duration."""
    require(project, resolve_role(project, role), "read", query="tags runs")
    runs = project.tag_store().runs().head(last)
    table = Table(show_edge=False)
    for col in ("run", "as of", "status", "customers", "rows", "tags", "seconds"):
        table.add_column(col)
    for r in runs.to_dict("records"):
        secs = (
            ""
            if pd.isna(r["finished_at"])
            else f"{(r['finished_at'] - r['started_at']).total_seconds():.1f}"
        )
        table.add_row(
            str(r["run_id"]),
            day(r["as_of"]),
            str(r["status"]),
            "" if pd.isna(r["n_customers"]) else f"{int(r['n_customers']):,}",
            "" if pd.isna(r["n_rows"]) else f"{int(r['n_rows']):,}",
            "" if pd.isna(r["n_tags"]) else str(int(r["n_tags"])),
            secs,
        )
    console.print(table)


@click.command("export")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="Snapshot current at this date (default: the newest).",
)
@click.option(
    "--tags",
    "tag_ids",
    default=None,
    metavar="ID,...",
    help="Only these tags (default: every tag your role may see).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file: .csv or .parquet.",
)
@purpose_option
@overwrite_option
@role_option
@pass_project
def export_cmd(
    project: Project,
    as_of: str | None,
    tag_ids: str | None,
    out: Path,
    purpose: str | None,
    overwrite: bool,
    role: str | None,
) -> None:
    """Write a snapshot (one row per customer and tag, scores included) to a file."""
    out = guard_out(project, out, overwrite)
    purpose = check_purpose(project, purpose, what="tags export")
    reader = make_reader(project, role)
    rows, customers = reader.export(out, as_of, tags=_tag_list(tag_ids))
    if purpose is not None and project.consent().enabled:
        frame = pd.read_csv(out, dtype=str) if out.suffix == ".csv" else pd.read_parquet(out)
        kept, excluded = consent_filter(
            project, frame, purpose, role=reader.role, what=f"tags export {out}"
        )
        _write_frame(kept, out)
        rows, customers = len(kept), kept["customer_id"].nunique()
        console.print(f"left out {excluded:,} customer(s) without consent to {purpose!r}")
    console.print(f"exported {rows:,} rows ({customers:,} customers) to {out}")


@click.command("history")
@click.argument("customer")
@click.option("--tags", "tag_ids", default=None, metavar="ID,...", help="Only these tags.")
@role_option
@pass_project
def history_cmd(project: Project, customer: str, tag_ids: str | None, role: str | None) -> None:
    """One customer's tag values over time, with the date of each change."""
    reader = make_reader(project, role)
    df = reader.history(customer, tags=_tag_list(tag_ids))
    if df.empty:
        console.print(f"no tag rows for customer {customer!r} in any snapshot you may see")
        return
    dates = project.tag_store().snapshot_dates()
    table = Table(title=f"customer {customer}", show_edge=False)
    table.add_column("tag")
    table.add_column("current")
    table.add_column("changes (date: value)")
    for tag_id, rows in df.groupby("tag_id", sort=True):
        by_date = {
            pd.Timestamp(a): (v, s)
            for a, v, s in zip(rows["as_of"], rows["value"], rows["score"], strict=True)
        }
        changes, last = [], None
        for d in dates:
            value = by_date.get(d, (None, None))[0]
            if value != last:
                changes.append(f"{d:%Y-%m-%d}: {value if value is not None else '-'}")
                last = value
        cur_value, cur_score = by_date.get(dates[-1], (None, None))
        current = "-" if cur_value is None else str(cur_value)
        if cur_score is not None and not pd.isna(cur_score):
            current += f" ({cur_score:.2f})"
        table.add_row(str(tag_id), current, " -> ".join(changes))
    console.print(table)


@click.command("diff")
@click.option("--from", "from_as_of", required=True, metavar="DATE", help="Earlier snapshot.")
@click.option("--to", "to_as_of", required=True, metavar="DATE", help="Later snapshot.")
@click.option("--tag", "tag_id", default=None, help="Only this tag.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every change (customer, tag, from, to) to .csv or .parquet.",
)
@overwrite_option
@role_option
@pass_project
def diff_cmd(
    project: Project,
    from_as_of: str,
    to_as_of: str,
    tag_id: str | None,
    out: Path | None,
    overwrite: bool,
    role: str | None,
) -> None:
    """Who entered and who left each tag value between two snapshots."""
    if out is not None:
        out = guard_out(project, out, overwrite)
    reader = make_reader(project, role)
    if out is not None:
        reader.authorise("export", [tag_id] if tag_id else None, f"diff --out {out}")
    changes = reader.diff(from_as_of, to_as_of, tag_id)
    summary = reader.store.diff_summary(changes)
    a, b = reader.store.resolve_as_of(from_as_of), reader.store.resolve_as_of(to_as_of)
    table = Table(title=f"tag changes {a:%Y-%m-%d} -> {b:%Y-%m-%d}", show_edge=False)
    for col in ("tag", "value", "entered", "left", "net"):
        table.add_column(col, justify="left" if col in ("tag", "value") else "right")
    for r in summary.to_dict("records"):
        table.add_row(
            str(r["tag_id"]),
            str(r["value"]),
            f"{r['entered']:,}",
            f"{r['left']:,}",
            f"{r['net']:+,}",
        )
    console.print(table)
    console.print(f"{len(changes):,} changes, {changes['customer_id'].nunique():,} customers")
    if out is not None:
        _write_frame(changes, out)
        console.print(f"changes written to {out}")


@click.command("transitions")
@click.argument("tag_id")
@click.option("--customer", default=None, help="Only this customer.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows shown (newest first).",
)
@role_option
@pass_project
def transitions_cmd(
    project: Project, tag_id: str, customer: str | None, limit: int, role: str | None
) -> None:
    """Changes of one tag (e.g. lifecycle) between consecutive snapshots, with dates."""
    reader = make_reader(project, role)
    t = reader.transitions(tag_id, customer_id=customer)
    if t.empty:
        console.print(f"no transitions of {tag_id!r} (needs two snapshots)")
        return
    counts = (
        t.fillna({"from_value": "-", "to_value": "-"})
        .groupby(["at", "from_value", "to_value"])
        .size()
    )
    table = Table(title=f"{tag_id} transitions", show_edge=False)
    for col in ("date", "from", "to", "customers"):
        table.add_column(col)
    for row in counts.reset_index(name="n").to_dict("records"):
        table.add_row(day(row["at"]), str(row["from_value"]), str(row["to_value"]), f"{row['n']:,}")
    console.print(table)
    if customer is None:
        return
    for r in t.sort_values("at", ascending=False).head(limit).to_dict("records"):
        console.print(f"  {day(r['at'])}: {_text(r['from_value'])} -> {_text(r['to_value'])}")


@click.command("report")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="Snapshot to report (default: the newest).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file (default: PROJECT/reports/tags-DATE.html).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Flag share moves larger than this (default: store.share_shift_threshold).",
)
@overwrite_option
@role_option
@pass_project
def report_cmd(
    project: Project,
    as_of: str | None,
    out: Path | None,
    threshold: float | None,
    overwrite: bool,
    role: str | None,
) -> None:
    """Coverage per tag value vs the previous run, with flags; writes an HTML report."""
    if out is not None:
        out = guard_out(project, out, overwrite)
    reader = make_reader(project, role)
    threshold = threshold or project.config.store.share_shift_threshold
    cov = reader.coverage(as_of, threshold=threshold)
    store = reader.store
    cur, prev = cov.attrs["as_of"], cov.attrs["previous_as_of"]
    table = Table(
        title=f"tag coverage {cur:%Y-%m-%d}" + (f" vs {prev:%Y-%m-%d}" if prev else ""),
        show_edge=False,
    )
    for col in ("tag", "value", "customers", "share", "change", "flag"):
        table.add_column(
            col, justify="right" if col in ("customers", "share", "change") else "left"
        )
    for r in cov.to_dict("records"):
        change = "" if pd.isna(r["share_change"]) else f"{100 * r['share_change']:+.1f} pt"
        flag = f"[bold red]{r['flag']}[/]" if r["flag"] else ""
        table.add_row(
            str(r["tag_id"]),
            "" if pd.isna(r["value"]) else str(r["value"]),
            f"{r['count']:,}",
            f"{100 * r['share']:.1f}%",
            change,
            flag,
        )
    console.print(table)
    visible = sorted(set(cov["tag_id"]))
    sizes = store.sizes_over_time(tags=visible)
    matrices = (
        {t: store.transition_matrix(t, prev, cur) for t in visible} if prev is not None else {}
    )
    info = store.run_info(cur)
    # Lint findings about tags this role may not see stay out of its report.
    lint = [f.as_dict() for f in lint_findings(project) if set(f.tags) <= set(visible)]
    html = render_report(
        cov,
        sizes,
        matrices,
        title=f"{project.config.name}: tag coverage",
        threshold=threshold,
        lint=lint,
        meta={
            "as_of": f"{cur:%Y-%m-%d}",
            "previous": f"{prev:%Y-%m-%d}" if prev is not None else "",
            "n_customers": info.n_customers,
            "run_id": info.run_id,
            "role": reader.role,
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
    )
    # The default path is the report's own (re-running a date refreshes it); a path
    # the user named was checked above.
    out = out or project.root / "reports" / f"tags-{cur:%Y-%m-%d}.html"
    write_atomic(out, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    n_flags = int((cov["flag"] != "").sum())
    for item in lint:
        console.print(f"lint {item['kind']}: {item['detail']}", markup=False, soft_wrap=True)
    console.print(
        f"{n_flags} flagged value(s), {len(lint)} lint finding(s); report written to {out}"
    )


def _write_frame(df: pd.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_atomic(out, lambda tmp: df.to_csv(tmp, index=False))
    elif suffix in (".parquet", ".pq"):
        write_atomic(out, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        raise click.BadParameter(
            f"Expected a .csv or .parquet file. Got {out}.", param_hint="--out"
        )


COMMANDS = [runs_cmd, export_cmd, history_cmd, diff_cmd, transitions_cmd, report_cmd]
