"""``tagsmith tags validate|evaluate|backtest``: rules checked and evaluated on the data.

The ``tags`` group itself is assembled in :mod:`tagsmith.cli` from these commands and
those of :mod:`tagsmith.cli.catalogue` (the catalogue alone: list, describe, plan,
apply), :mod:`tagsmith.cli.tagdata`, :mod:`tagsmith.cli.tagrun` and
:mod:`tagsmith.cli.govern`.
"""

from __future__ import annotations

import time

import click
import pandas as pd

from features.build import build_features
from features.catalog import feature_catalog
from features.events import prepare_events
from features.spec import FeatureSpec
from features.store import FactStore
from tags.backtest import backtest as run_backtest
from tags.backtest import backtest_dates, parse_every, parse_outcome
from tags.engine import evaluate_tags
from tagsmith.cli._common import (
    console,
    emit_json,
    format_option,
    pass_project,
    print_columns,
    tag_list_option,
)
from tagsmith.cli._governance import lint_findings
from tagsmith.project import Project

__all__ = ["COMMANDS", "default_as_of", "feature_kinds"]


@click.command()
@pass_project
def validate(project: Project) -> None:
    """Check every catalogue file: schema, naming rules, rule syntax and rule types."""
    catalogue = project.catalogue()
    kinds = feature_kinds(project.feature_spec())
    catalogue.check(kinds)
    counts: dict[str, int] = {}
    for tag in catalogue:
        counts[tag.status] = counts.get(tag.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(
        f"Catalogue OK: {len(catalogue)} tags ({summary or 'none'}) in {project.catalogue_dir}; "
        f"active rules type-check against the {len(kinds)} features of the feature spec",
        soft_wrap=True,
    )
    findings = lint_findings(project)
    for finding in findings:
        console.print(
            f"  lint {finding.kind}: {finding.detail}; {finding.suggestion}",
            markup=False,
            soft_wrap=True,
        )
    if findings:
        console.print(f"{len(findings)} lint finding(s): see 'tagsmith tags lint'")


def feature_kinds(spec: FeatureSpec) -> dict[str, str]:
    """Rule-language kind of every feature the spec yields (for load-time type checks)."""
    kinds = {}
    for info in feature_catalog(spec):
        dtype = info.dtype.lower()
        if dtype in ("bool", "boolean"):
            kinds[info.name] = "bool"
        elif dtype.startswith(("float", "int", "uint")):
            kinds[info.name] = "num"
        elif dtype.startswith("datetime"):
            kinds[info.name] = "date"
        else:
            kinds[info.name] = "str"
    kinds.setdefault("customer_id", "str")
    return kinds


def default_as_of(store: FactStore) -> pd.Timestamp:
    """Midnight (UTC) after the latest stored event: every fact is visible."""
    last = pd.Timestamp(store.last_event_at())
    last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
    return last.normalize() + pd.Timedelta(days=1)


def _as_of_option(value: str | None, store: FactStore) -> pd.Timestamp:
    if value is None:
        return default_as_of(store)
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected a date like 2024-06-01, got {value!r}") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@click.command()
@click.option(
    "--as-of", "as_of", default=None, help="Evaluation date (default: day after the last event)."
)
@tag_list_option("Only these tags.")
@format_option
@pass_project
def evaluate(project: Project, as_of: str | None, tag_ids: tuple[str, ...], fmt: str) -> None:
    """Evaluate rule and fact tags on the fact store; print value sizes (writes nothing)."""
    catalogue = project.catalogue()
    spec = project.feature_spec()
    store = project.fact_store()
    when = _as_of_option(as_of, store)
    customers, events = store.load_customers(), store.load_events()
    began = time.perf_counter()
    prepared = prepare_events(customers, events)
    frame = prepared.build_features(when, spec=spec)
    built = time.perf_counter() - began
    began = time.perf_counter()
    long = evaluate_tags(frame, prepared, catalogue, as_of=when, tag_ids=list(tag_ids) or None)
    took = time.perf_counter() - began
    console.print(
        f"Tags as of {when:%Y-%m-%d %H:%M} UTC for {len(frame):,} customers "
        f"(features {built:.2f} s, tags {took:.2f} s):",
        soft_wrap=True,
    )
    counts = long.groupby(["tag_id", "value"], observed=True).size()
    rows: list[tuple[str, ...]] = [("tag", "value", "customers", "share")]
    records: list[dict[str, object]] = []
    chosen = (
        [catalogue.get(t) for t in tag_ids]
        if tag_ids
        else catalogue.active(sources=("fact", "rule"))
    )
    for tag in chosen:
        values = (
            tag.value_ids
            if not tag.open_values
            else sorted({str(v) for (t, v) in counts.index if t == tag.id})
        )
        for value in values:
            n = int(counts.get((tag.id, value), 0))
            share = f"{n / len(frame):.1%}" if len(frame) else "-"
            rows.append((tag.id, value, f"{n:,}", share))
            share_of = n / len(frame) if len(frame) else None
            records.append({"tag_id": tag.id, "value": value, "customers": n, "share": share_of})
    if fmt == "json":
        emit_json({"as_of": when, "n_customers": len(frame), "values": records})
        return
    print_columns(rows)


@click.command()
@click.argument("tag_id")
@click.option("--from", "date_from", required=True, help="First evaluation date (YYYY-MM-DD).")
@click.option("--to", "date_to", required=True, help="Last evaluation date (YYYY-MM-DD).")
@click.option("--every", default="30d", show_default=True, help="Step between dates (30d, 2w).")
@click.option(
    "--outcome",
    required=True,
    help="What the tag should predict: [no_]EVENT_Nd, e.g. no_purchase_90d, complaint_30d.",
)
@click.option("--value", default=None, help="For multi-valued tags: the value to test.")
@format_option
@pass_project
def backtest(
    project: Project,
    tag_id: str,
    date_from: str,
    date_to: str,
    every: str,
    outcome: str,
    value: str | None,
    fmt: str,
) -> None:
    """What TAG_ID would have said on past dates, and how well it predicted OUTCOME.

    Each date sees only the facts before it (features are rebuilt as of that date).
    """
    catalogue = project.catalogue()
    spec = project.feature_spec()
    store = project.fact_store()
    target = parse_outcome(outcome, project.config.facts.all_event_types)
    dates = backtest_dates(date_from, date_to, parse_every(every))
    customers, events = store.load_customers(), store.load_events()

    def build(c: pd.DataFrame, e: pd.DataFrame, d: pd.Timestamp) -> pd.DataFrame:
        return build_features(c, e, as_of=d, spec=spec)

    result = run_backtest(
        tag_id,
        catalogue,
        customers,
        events,
        dates=dates,
        outcome=target,
        build=build,
        value=value,
        observed_until=store.last_event_at(),
    )
    if fmt == "json":
        emit_json(
            {
                "tag_id": tag_id,
                "value": result.value,
                "outcome": target.name,
                "points": result.points,
                "summary": result.summary(),
            }
        )
        return
    console.print(
        f"Backtest of {tag_id} = {result.value} against {target.name} ({target.describe()}):",
        markup=False,
    )

    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.1%}"

    rows: list[tuple[str, ...]] = [
        ("as_of", "customers", "tagged", "outcome rate", "precision", "recall", "lift")
    ]
    for p in result.points:
        rows.append(
            (
                f"{p.as_of:%Y-%m-%d}",
                f"{p.population:,}",
                f"{p.tagged:,}",
                pct(p.base_rate) if p.complete else "incomplete",
                pct(p.precision),
                pct(p.recall),
                "-" if p.lift != p.lift else f"{p.lift:.2f}",
            )
        )
    print_columns(rows)
    summary = result.summary()
    if summary["dates"]:
        console.print(
            f"Mean over {int(summary['dates'])} complete date(s): precision "
            f"{pct(summary['precision'])}, recall {pct(summary['recall'])}, lift "
            f"{summary['lift']:.2f}"
        )
    else:
        console.print("No date has its whole outcome window inside the data yet.")


COMMANDS = [validate, evaluate, backtest]
