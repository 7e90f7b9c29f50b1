"""``tagsmith models``: registered predictors, their aliases, history and promotion."""

from __future__ import annotations

import math
from datetime import datetime

import click
from rich.table import Table

from tags.audit import default_actor
from tagsmith.cli._common import console, pass_project
from tagsmith.cli._governance import audit_log, resolve_role, role_option
from tagsmith.project import Project
from training.gates import METRIC_DIRECTIONS, GateReport
from training.promotion import rollback as rollback_champion
from training.registry import CHAMPION, ModelRegistry, VersionInfo

__all__ = ["models", "open_registry", "render_gate_table"]

# Metrics shown first in `show` and `compare` (the gate metrics), then the rest.
_HEADLINE = [m for task in METRIC_DIRECTIONS.values() for m in task]


def open_registry(project: Project) -> ModelRegistry:
    """The project's model registry, alias history and promotion locks."""
    return ModelRegistry(
        project.mlflow_tracking_uri,
        project.model_history_path,
        project.model_locks_dir,
        lock_timeout=project.config.promotion.lock_timeout_seconds,
    )


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
            _num(o.allowed) if o.allowed >= 0 or math.isnan(o.allowed)
            else f"must win by >{-o.allowed:g}",
            ("[green]PASS[/]" if o.passed else "[red]FAIL[/]") + f" {o.note}",
        )
    return table


@click.group()
def models() -> None:
    """Registered predictors: versions, aliases, promotion behind gates, rollback, history."""


@models.command("list")
@pass_project
def list_models(project: Project) -> None:
    """Every registered model with its versions and aliases."""
    found = open_registry(project).list_models()
    if not found:
        console.print("No registered models yet: run 'tagsmith train churn' first.")
        return
    table = Table(title=f"Registered models ({project.mlflow_tracking_uri})", title_justify="left")
    for col in ("model", "versions", "latest", "aliases", "updated"):
        table.add_column(col, overflow="fold")
    for m in found:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(m.name, str(m.n_versions), f"v{m.latest_version}", aliases,
                      _when(m.updated_at))
    console.print(table)


@models.command()
@click.argument("name")
@pass_project
def show(project: Project, name: str) -> None:
    """Versions of NAME: aliases, metrics, training window, who and when."""
    registry = open_registry(project)
    versions = registry.versions(name)
    table = Table(title=f"{name}: {len(versions)} version(s)", title_justify="left")
    for col in ("version", "aliases", "registered", "by", "metrics", "training window", "run"):
        table.add_column(col, overflow="fold")
    for v in versions:
        window = ", ".join(f"{k}={val}" for k, val in v.training_window.items()) or "-"
        table.add_row(
            f"v{v.version}", ", ".join(v.aliases) or "-", _when(v.created_at), v.user or "-",
            _headline_metrics(v), window, (v.run_id or "-")[:12],
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
@pass_project
def compare(project: Project, name: str, v1: str, v2: str) -> None:
    """Logged metrics and parameters of two versions of NAME side by side (V: number or alias)."""
    registry = open_registry(project)
    a, b = registry.version(name, v1), registry.version(name, v2)
    table = Table(title=f"{name}: v{a.version} vs v{b.version} (logged at training)",
                  title_justify="left")
    for col in ("metric", f"v{a.version}", f"v{b.version}", "delta"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    keys = sorted(set(a.metrics) | set(b.metrics),
                  key=lambda k: (_HEADLINE.index(k) if k in _HEADLINE else len(_HEADLINE), k))
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
@pass_project
def history(project: Project, name: str, alias: str | None) -> None:
    """Which version held each alias of NAME from when to when, who moved it and why."""
    registry = open_registry(project)
    registry.sync_history(name)
    spans = [s for s in registry.history.intervals(name) if alias in (None, s.alias)]
    if not spans:
        console.print(f"No alias of {name} has been set yet.")
        return
    table = Table(title=f"{name}: alias history", title_justify="left")
    for col in ("alias", "version", "from", "to", "moved by", "action", "reason"):
        table.add_column(col, overflow="fold")
    for s in spans:
        table.add_row(s.alias, f"v{s.version}", _when(s.start),
                      "now" if s.end is None else _when(s.end), s.actor, s.action,
                      s.reason or "-")
    console.print(table)


@models.command()
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the history and the audit log).")
@role_option
@pass_project
def rollback(project: Project, name: str, reason: str, role: str | None) -> None:
    """Point NAME's champion back at the version that held it before the current one."""
    registry = open_registry(project)
    result = rollback_champion(
        registry, name, actor=default_actor(), role=resolve_role(project, role),
        reason=reason, audit=audit_log(project),
    )
    console.print(
        f"{name}: {CHAMPION} rolled back from v{result.from_version} to v{result.to_version} "
        f"(recorded at {_when(result.event.at)} by {result.event.actor})."
    )
