"""``tagsmith tags run``: one batch tagging run into the tag store; ``tagsmith schedule``:
the same run when the tags' ``refresh`` says it is due."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scoring.batch import STEPS, Predictor, run_tagging
from tags.audit import default_actor
from tags.schedule import Schedule, crontab_line, schedule_of
from tags.store_format import to_as_of
from tagsmith.activate import after_run
from tagsmith.champions import champion_predictors
from tagsmith.cli._common import console, day, emit_json, err_console, format_option, pass_project
from tagsmith.cli._governance import require, resolve_role, role_option
from tagsmith.project import Project
from tagsmith.spark_engine import (
    ENGINES,
    SparkTagging,
    default_cutoff,
    require_store_lineage,
)

__all__ = ["run_cmd", "run_tags", "schedule_group"]


@click.command("run")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="As-of date (default: the day after the latest event).",
)
@click.option("--force", is_flag=True, help="Recompute even when the same inputs are stored.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: this process; spark: hash-partitioned on Spark (README, 'More than one "
    "machine'), recorded in the tag store unless spark.tag_store is 'parquet'.",
)
@click.option(
    "--master",
    default=None,
    metavar="URL",
    help="Spark master for --engine spark (default: spark.master, local[*]).",
)
@format_option
@role_option
@pass_project
def run_cmd(
    project: Project,
    as_of: str | None,
    force: bool,
    engine: str,
    master: str | None,
    role: str | None,
    fmt: str,
) -> None:
    """Tag every customer: features -> rule tags -> predicted tags -> one snapshot."""
    run_tags(project, as_of, force, role, engine=engine, master=master, fmt=fmt)


def run_tags(
    project: Project,
    as_of: str | None,
    force: bool,
    role: str | None,
    *,
    engine: str = "local",
    master: str | None = None,
    fmt: str = "text",
) -> None:
    """One tagging run with its console report (``tags run``, ``schedule run``).

    With ``fmt="json"`` the report is one JSON document on stdout instead.
    """
    role = resolve_role(project, role)
    require(project, role, "run", query=f"tags run as_of={as_of or 'default'}")
    catalogue = project.catalogue()
    spec = project.feature_spec()
    # Champion models of the registry (scoring.champions); with none, rule tags only
    # and a notice per missing model.
    champions, notices = champion_predictors(project)
    predictors: list[Predictor] = list(champions)
    spark = SparkTagging(project, master) if engine == "spark" else None
    if spark is not None:
        require_store_lineage(project)
    if spark is not None and project.config.spark.tag_store == "parquet":
        _run_into_parquet(project, spark, as_of, predictors, notices)
        return
    store = project.tag_store()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("tagging", total=len(STEPS))

        def on_step(name: str) -> None:
            done = STEPS.index(name) if name in STEPS else 0
            progress.update(task, description=name, completed=done)

        result = run_tagging(
            # The imported facts plus the events sent to real-time tagging.
            facts=project.facts(),
            catalogue=catalogue,
            store=store,
            as_of=as_of,
            spec=spec,
            predictors=predictors,
            notices=notices,
            on_step=on_step,
            force=force,
            engine=spark,
        )
        progress.update(task, completed=len(STEPS))
    run = result.run
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="run",
        tags=result.counts["tag_id"].tolist(),
        n_customers=run.n_customers,
        query=f"tags run as_of={day(run.as_of)}",
        extra={"run_id": run.run_id, "reused": run.reused, "rows": run.n_rows},
    )
    overridden = (run.meta or {}).get("live_overridden") if not run.reused else None
    if overridden:
        console.print(f"[yellow]notice:[/] batch replaced {overridden:,} live tag values")
    for note in result.notices:
        console.print(f"[yellow]notice:[/] {note}")
    # Applied triggers fire on the transitions this run recorded (read back from the store).
    fired = after_run(project)
    if fmt == "json":
        emit_json(
            {
                "run_id": run.run_id,
                "as_of": run.as_of,
                "reused": run.reused,
                "n_customers": run.n_customers,
                "n_rows": run.n_rows,
                "n_tags": run.n_tags,
                "timings": result.timings,
                "notices": result.notices,
                "tags": result.counts,
                "triggers": fired.message or None,
            }
        )
        return
    if run.reused:
        console.print(
            f"snapshot {day(run.as_of)} is up to date (run {run.run_id}, same inputs): "
            "nothing to do; --force recomputes"
        )
        return
    table = Table(title=f"tag snapshot {day(run.as_of)}", show_edge=False)
    for col in ("tag", "source", "customers", "share"):
        table.add_column(col, justify="right" if col in ("customers", "share") else "left")
    for r in result.counts.to_dict("records"):
        table.add_row(
            str(r["tag_id"]), str(r["source"]), f"{int(r['rows']):,}", f"{100 * r['share']:.1f}%"
        )
    console.print(table)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    console.print(
        f"run {run.run_id}: {run.n_customers:,} customers, {run.n_rows:,} tag rows, "
        f"{run.n_tags} tags ({timings})"
    )
    if fired.message:
        console.print(fired.message, soft_wrap=True)


def _run_into_parquet(
    project: Project,
    spark: SparkTagging,
    as_of: str | None,
    predictors: list[Predictor],
    notices: list[str],
) -> None:
    """``spark.tag_store: parquet``: the long table stays in Parquet, not the tag store."""
    cutoff = to_as_of(as_of) if as_of is not None else default_cutoff(project, spark.master)
    with console.status(f"Tagging on Spark as of {day(cutoff)}", spinner="dots"):
        run = spark.compute(
            cutoff=pd.Timestamp(cutoff),
            spec=project.feature_spec(),
            catalogue=project.catalogue(),
            predictors=predictors,
        )
    for note in notices:
        console.print(f"[yellow]notice:[/] {note}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
    console.print(
        f"{run.n_customers:,} customers tagged as of {day(cutoff)} in {run.buckets} "
        f"partitions -> {run.uri} ({timings}); not recorded in the tag store "
        "(spark.tag_store: parquet)"
    )


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled refresh: run tagging when the tags' 'refresh' says it is due."""


def _schedule(project: Project) -> Schedule:
    store = project.tag_store()
    runs = store.runs() if store.exists() else None
    last = None
    if runs is not None and len(runs):
        done = runs[runs["status"] == "succeeded"]["finished_at"].dropna()
        last = pd.Timestamp(done.max()).to_pydatetime() if len(done) else None
    return schedule_of(project.catalogue(), last_run_at=last, now=datetime.now(UTC))


def _describe(s: Schedule) -> str:
    if s.refresh is None:
        return "every active tag refreshes on demand: nothing is scheduled"
    last = f"{s.last_run_at:%Y-%m-%d %H:%M} UTC" if s.last_run_at else "never"
    due = "now" if s.due else f"at {s.due_at:%Y-%m-%d %H:%M} UTC"
    return (
        f"refresh {s.refresh} (tightest of the active tags: {', '.join(s.tags)}); "
        f"last run {last}; next run due {due}"
    )


@schedule_group.command("status")
@click.option("--crontab", is_flag=True, help="Print a crontab line running 'schedule run'.")
@pass_project
def schedule_status(project: Project, crontab: bool) -> None:
    """When the next tagging run is due (and, with --crontab, a line for cron)."""
    s = _schedule(project)
    console.print(_describe(s), soft_wrap=True)
    if crontab and s.refresh is not None:
        command = f"cd {project.root} && tagsmith schedule run --role admin"
        click.echo(crontab_line(s.refresh, command))


@schedule_group.command("run")
@click.option("--loop", is_flag=True, help="Keep running: sleep until the next due time.")
@click.option(
    "--max-runs", type=click.IntRange(min=1), default=None, help="With --loop: stop after N runs."
)
@role_option
@pass_project
def schedule_run(project: Project, loop: bool, max_runs: int | None, role: str | None) -> None:
    """Run tagging if it is due (with --loop, every time it comes due); else say when."""
    runs = 0
    while True:
        s = _schedule(project)
        if s.due:
            console.print(f"due: {_describe(s)}", soft_wrap=True)
            run_tags(project, None, False, role)
            runs += 1
            if max_runs is not None and runs >= max_runs:
                return
            continue
        console.print(f"not due: {_describe(s)}", soft_wrap=True)
        if not loop or s.due_at is None:
            return
        wait = (s.due_at - datetime.now(UTC)).total_seconds()
        time.sleep(min(max(wait, 1.0), 3600.0))
