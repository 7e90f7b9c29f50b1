"""``tagsmith models``: registered predictors, their aliases, history and promotion."""

from __future__ import annotations

import math
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click
import numpy as np
from rich.table import Table

from tags.audit import default_actor
from tagsmith.cli._common import console, emit_json, format_option, pass_project
from tagsmith.cli._governance import resolve_role, role_option
from tagsmith.modelops import latest_rescoring, promote_model, rollback_model
from tagsmith.project import Project
from training.errors import PromotionError
from training.gates import METRIC_DIRECTIONS, GateReport
from training.promotion import TAG_OF_TASK, PromotionResult, rule_producer_scores
from training.promotion import contest as contest_producers
from training.registry import CHALLENGER, CHAMPION, VersionInfo

if TYPE_CHECKING:
    from training.rescoring import Rescoring

__all__ = ["models", "render_gate_table"]

# Metrics shown first in `show` and `compare` (the gate metrics), then the rest.
_HEADLINE = [m for task in METRIC_DIRECTIONS.values() for m in task]


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _signed(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.4f}"


def _headline_metrics(info: VersionInfo, limit: int = 4) -> str:
    keys = [k for k in _HEADLINE if k in info.metrics] or sorted(info.metrics)
    return ", ".join(f"{k}={info.metrics[k]:.4g}" for k in keys[:limit]) or "-"


def render_gate_table(report: GateReport, title: str) -> Table:
    """The gate table of one promotion decision (rich)."""
    table = Table(title=title, title_justify="left")
    table.add_column("gate")
    table.add_column(report.candidate_name, justify="right")
    table.add_column("reference")
    table.add_column("ref value", justify="right")
    table.add_column("delta", justify="right")
    table.add_column("allowed worsening", justify="right")
    table.add_column("result")
    for o in report.outcomes:
        arrow = "higher" if o.higher_is_better else "lower"
        table.add_row(
            f"{o.metric} ({arrow} better)",
            _num(o.candidate),
            o.reference_name,
            _num(o.reference),
            _signed(o.delta),
            (f"none: must beat by >{-o.allowed:g}" if o.must_beat else _num(o.allowed)),
            ("[green]PASS[/]" if o.passed else "[red]FAIL[/]") + f" {o.note}",
        )
    return table


@click.group()
def models() -> None:
    """Registered predictors: versions, aliases, promotion behind gates, rollback, history."""


@models.command("list")
@format_option
@pass_project
def list_models(project: Project, fmt: str) -> None:
    """Every registered model with its versions and aliases."""
    found = project.registry().list_models()
    if fmt == "json":
        emit_json(found)
        return
    if not found:
        console.print("No registered models yet: run 'tagsmith models train churn' first.")
        return
    table = Table(title=f"Registered models ({project.mlflow_tracking_uri})", title_justify="left")
    for col in ("model", "versions", "latest", "aliases", "updated"):
        table.add_column(col, overflow="fold")
    for m in found:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(
            m.name, str(m.n_versions), f"v{m.latest_version}", aliases, _when(m.updated_at)
        )
    console.print(table)


@models.command()
@click.argument("name")
@format_option
@pass_project
def show(project: Project, name: str, fmt: str) -> None:
    """Versions of NAME: aliases, metrics, training window, who and when."""
    registry = project.registry()
    versions = registry.versions(name)
    if fmt == "json":
        emit_json({"name": name, "versions": versions})
        return
    table = Table(title=f"{name}: {len(versions)} version(s)", title_justify="left")
    for col in ("version", "aliases", "registered", "by", "metrics", "training window", "run"):
        table.add_column(col, overflow="fold")
    for v in versions:
        window = ", ".join(f"{k}={val}" for k, val in v.training_window.items()) or "-"
        table.add_row(
            f"v{v.version}",
            ", ".join(v.aliases) or "-",
            _when(v.created_at),
            v.user or "-",
            _headline_metrics(v),
            window,
            (v.run_id or "-")[:12],
        )
    console.print(table)
    spans = registry.history.intervals(name)
    if spans:
        last = spans[-1]
        console.print(
            f"Last alias move: {last.alias} -> v{last.version} at {_when(last.start)} by "
            f"{last.actor} ({last.action}). Full record: tagsmith models history {name}"
        )


@models.command()
@click.argument("name")
@click.argument("v1")
@click.argument("v2")
@format_option
@pass_project
def compare(project: Project, name: str, v1: str, v2: str, fmt: str) -> None:
    """Logged metrics and parameters of two versions of NAME side by side (V: number or alias)."""
    registry = project.registry()
    a, b = registry.version(name, v1), registry.version(name, v2)
    if fmt == "json":
        emit_json({"name": name, "a": a, "b": b})
        return
    table = Table(
        title=f"{name}: v{a.version} vs v{b.version} (logged at training)", title_justify="left"
    )
    for col in ("metric", f"v{a.version}", f"v{b.version}", "delta"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    keys = sorted(
        set(a.metrics) | set(b.metrics),
        key=lambda k: (_HEADLINE.index(k) if k in _HEADLINE else len(_HEADLINE), k),
    )
    for k in keys:
        x, y = a.metrics.get(k, math.nan), b.metrics.get(k, math.nan)
        table.add_row(k, _num(x), _num(y), _signed(y - x))
    console.print(table)
    params = Table(title="Parameters that differ", title_justify="left")
    for col in ("parameter", f"v{a.version}", f"v{b.version}"):
        params.add_column(col)
    for k in sorted(set(a.params) | set(b.params)):
        if a.params.get(k) != b.params.get(k):
            params.add_row(k, a.params.get(k, "-"), b.params.get(k, "-"))
    facts = [
        ("aliases", ", ".join(a.aliases) or "-", ", ".join(b.aliases) or "-"),
        ("registered", _when(a.created_at), _when(b.created_at)),
        ("by", a.user or "-", b.user or "-"),
    ]
    for row in facts:
        params.add_row(*row)
    console.print(params)


@models.command()
@click.argument("name")
@click.option("--alias", default=None, help="Only this alias (e.g. champion).")
@format_option
@pass_project
def history(project: Project, name: str, alias: str | None, fmt: str) -> None:
    """Which version held each alias of NAME from when to when, who moved it and why."""
    registry = project.registry()
    registry.sync_history(name)
    spans = [s for s in registry.history.intervals(name) if alias in (None, s.alias)]
    if fmt == "json":
        emit_json(spans)
        return
    if not spans:
        console.print(f"No alias of {name} has been set yet.")
        return
    table = Table(title=f"{name}: alias history", title_justify="left")
    for col in ("alias", "version", "from", "to", "moved by", "action", "reason"):
        table.add_column(col, overflow="fold")
    for s in spans:
        table.add_row(
            s.alias,
            f"v{s.version}",
            _when(s.start),
            "now" if s.end is None else _when(s.end),
            s.actor,
            s.action,
            s.reason or "-",
        )
    console.print(table)


@models.command()
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the history and the audit log).")
@role_option
@pass_project
def rollback(project: Project, name: str, reason: str, role: str | None) -> None:
    """Point NAME's champion back at the version that held it before the current one."""
    result, checked = rollback_model(
        project, name, reason=reason, actor=default_actor(), role=resolve_role(project, role)
    )
    if not checked:
        console.print("No facts imported: the restored version is load-checked only.")
    console.print(
        f"{name}: {CHAMPION} rolled back from v{result.from_version} to v{result.to_version} "
        f"(recorded at {_when(result.event.at)} by {result.event.actor})."
    )


def _verdict(result: PromotionResult) -> str:
    before = (
        "there was no champion"
        if result.previous_champion is None
        else (f"it replaced champion v{result.previous_champion}")
    )
    if result.forced:
        return (
            f"[yellow]FORCED[/]: v{result.candidate} is now champion despite failed gates "
            f"(reason recorded: {result.reason!r}); {before}."
        )
    if result.promoted:
        return f"[green]PROMOTED[/]: v{result.candidate} is now champion; {before}."
    failed = ", ".join(o.metric for o in result.report.failures)
    kept = (
        "there is still no champion"
        if result.previous_champion is None
        else f"champion v{result.previous_champion} is unchanged"
    )
    return (
        f"[red]REJECTED[/]: v{result.candidate} failed {failed}; {kept}. "
        "Override with --force --reason TEXT."
    )


@models.command()
@click.argument("name")
@click.option(
    "--version",
    "version",
    default=None,
    metavar="V",
    help="Version (number or alias) to promote. Default: the current challenger.",
)
@click.option("--force", is_flag=True, help="Promote even if gates fail (needs --reason).")
@click.option("--reason", default="", help="Why (required with --force; always recorded).")
@role_option
@pass_project
def promote(
    project: Project, name: str, version: str | None, force: bool, reason: str, role: str | None
) -> None:
    """Re-score NAME's candidate and champion on the latest labelled window; promote if gates pass.

    With no champion yet, the candidate must beat the best baseline instead. Exit code
    1 when the gates refuse the candidate (nothing changes).
    """
    with console.status("building the latest labelled window and re-scoring"):
        outcome = promote_model(
            project,
            name,
            version=version,
            force=force,
            reason=reason,
            actor=default_actor(),
            role=resolve_role(project, role),
        )
    if outcome.spec_note:
        console.print(f"[yellow]note:[/] {outcome.spec_note}")
    result, window = outcome.result, outcome.window
    against = (
        "the best baseline per metric"
        if result.report.against == "baselines"
        else f"champion v{result.previous_champion}"
    )
    console.print(
        render_gate_table(
            result.report,
            title=(
                f"{name}: v{result.candidate} vs {against}, re-scored on cutoff "
                f"{window.cutoff.date()} + {window.horizon_days}d ({len(window.labels):,} "
                "customers)"
            ),
        )
    )
    console.print(_verdict(result))
    if not result.promoted:
        sys.exit(1)


def _rule_producers(project: Project, tag: str, rescoring: Rescoring) -> dict[str, np.ndarray]:
    """0/1 scores of the rule tags configured to compete with ``tag``, at the window's cutoff."""
    from tags.engine import evaluate_tags

    specs = project.config.promotion.contest_rules.get(tag, [])
    if not specs:
        return {}
    catalogue = project.catalogue()
    missing = sorted({s.partition("=")[0] for s in specs} - {t.id for t in catalogue})
    if missing:
        raise PromotionError(
            f"Expected the rule tags of promotion.contest_rules.{tag} in the catalogue "
            f"({project.catalogue_dir}). Got no {missing}: fix the config or the catalogue."
        )
    features = rescoring.rule_features()
    window = rescoring.window
    rows = evaluate_tags(
        features,
        rescoring.events,
        catalogue,
        as_of=window.cutoff,
        tag_ids=sorted({s.partition("=")[0] for s in specs}),
    )
    return {
        f"rule {spec}": rule_producer_scores(rows, features["customer_id"], spec) for spec in specs
    }


@models.command()
@click.argument("tag")
@role_option
@pass_project
def contest(project: Project, tag: str, role: str | None) -> None:
    """Score every producer of TAG (rule tags, baselines, models) on the same labelled window."""
    task_by_tag = {t: task for task, t in TAG_OF_TASK.items()}
    if tag not in task_by_tag:
        raise PromotionError(f"Expected a predicted tag among {sorted(task_by_tag)}. Got {tag!r}.")
    task = task_by_tag[tag]
    name = f"{task}-predictor"
    with console.status("building the latest labelled window"):
        rescoring = latest_rescoring(project, task, None)
    window = rescoring.window
    producers = _rule_producers(project, tag, rescoring)
    producers.update({f"baseline {k}": v for k, v in rescoring.baseline_scores().items()})
    registry = project.registry()
    try:
        aliases = registry.aliases(name)
    except PromotionError:
        aliases = {}
    except Exception:
        aliases = {}
    for alias in (CHAMPION, CHALLENGER):
        v = aliases.get(alias)
        label = f"model {name}/{v} ({alias})"
        if v is not None and not any(k.startswith(f"model {name}/{v} ") for k in producers):
            producers[label] = registry.load(name, v).predict(window.features)
    table = contest_producers(task, window.labels, producers)
    out = Table(
        title=(
            f"{tag}: producers on cutoff {window.cutoff.date()} + {window.horizon_days}d "
            f"({len(window.labels):,} customers)"
        ),
        title_justify="left",
    )
    for col in table.columns:
        out.add_column(col, justify="left" if col == "producer" else "right")
    for row in table.itertuples(index=False):
        out.add_row(row[0], *(_num(float(x)) for x in row[1:]))
    console.print(out)
    project.audit_log().append(
        actor=default_actor(),
        role=resolve_role(project, role),
        action="models.contest",
        tags=[tag],
        n_customers=len(window.labels),
        query=f"models contest {tag}",
        extra={"cutoff": str(window.cutoff), "producers": list(table["producer"])},
    )
