"""``tagsmith train``, ``tagsmith evaluate`` and ``tagsmith predict``: the predictive tags."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from rich.table import Table

from features.build import build_features
from features.cutoffs import normalize_as_of
from features.errors import FeaturesError
from features.spec import FeatureSpec, spec_hash
from features.store import FactStore
from scoring.contract import REGISTERED_MODEL_NAMES
from tags.audit import default_actor
from tagsmith.cli._common import console, guard_out, overwrite_option, pass_project
from tagsmith.errors import TagsmithError
from tagsmith.outputs import write_atomic
from tagsmith.project import Project
from training.config import TrainingConfig
from training.errors import TrainingError
from training.evaluation import HIGHER_IS_BETTER
from training.pipeline import Comparison, OracleScorer, Segmenter, TrainingResult

__all__ = ["evaluate", "predict", "train"]

_TARGET = click.Choice(["churn", "value"])
_CUTOFF_HELP = (
    "Comma-separated cutoff dates (YYYY-MM-DD) instead of the rolling monthly ones: the "
    "latest tests, the one before validates, the rest train."
)


# Shared by train and evaluate: the generator's truth file adds the oracle's row.
_truth_option = click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Generator truth file: adds the oracle's metrics (synthetic data).",
)


def _model_choice(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--alias`` / ``--version``: which registered model (shared by evaluate and predict)."""
    func = click.option(
        "--version",
        "version",
        type=click.IntRange(min=1),
        default=None,
        help="A registered version number instead of an alias.",
    )(func)
    return click.option(
        "--alias",
        type=click.Choice(["champion", "challenger"]),
        default=None,
        help="Which registered model (default: champion).",
    )(func)


def parse_horizon(text: str | None) -> int | None:
    """``"90d"``, ``"90"`` or ``"12w"`` -> days.

    Raises:
        click.BadParameter: Not a positive number of days or weeks.
    """
    if text is None or not text.strip():
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"expected a positive number of days like '90d' (or weeks, '13w'). Got {text!r}."
        )
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def _cutoffs(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _config(project: Project, horizon: str | None) -> TrainingConfig:
    config = project.config.training
    days = parse_horizon(horizon)
    if days is not None:
        if not 1 <= days <= 730:
            raise click.BadParameter(
                f"expected a horizon of 1 to 730 days. Got {days} days.", param_hint="--horizon"
            )
        config = config.model_copy(update={"horizon_days": days})
    return config


def _facts(project: Project) -> tuple[FactStore, pd.DataFrame, pd.DataFrame]:
    store = project.fact_store()
    if not store.exists():
        raise TagsmithError(
            f"Expected imported facts in {project.facts_dir}. Got none: run "
            "'tagsmith facts import' first."
        )
    return store, store.load_customers(), store.load_events()


def read_truth(path: Path) -> pd.DataFrame:
    """The generator's truth file (CSV or Parquet) with timestamps parsed as UTC.

    Raises:
        TagsmithError: The file is missing or unreadable.
    """
    try:
        if path.suffix == ".parquet":
            truth = pd.read_parquet(path)
        else:
            truth = pd.read_csv(path, dtype={"customer_id": "string"})
    except (OSError, ValueError) as exc:
        raise TagsmithError(f"Expected a readable truth file at {path}. Got: {exc}") from exc
    for column in truth.columns:
        if column.endswith("_at"):
            truth[column] = pd.to_datetime(truth[column], utc=True, format="ISO8601")
    return truth


def oracle_from_truth(
    truth_path: Path | None, target: str, horizon_days: int
) -> OracleScorer | None:
    """The generator's oracle for ``target`` from its truth file, if one is given."""
    if truth_path is None:
        return None
    from synthetic import oracle_churn_probability, oracle_expected_value

    truth = read_truth(truth_path)
    fn = oracle_churn_probability if target == "churn" else oracle_expected_value

    def oracle(cutoff: pd.Timestamp) -> pd.Series:
        scores = fn(truth, cutoff=cutoff, horizon_days=horizon_days)
        return scores.set_axis(scores.index.astype(str))

    return oracle


def results_table(result: TrainingResult | Comparison, title: str) -> Table:
    """Scorers (model, each baseline, oracle) by metric, best non-oracle value in bold."""
    metrics = list(result.metrics["model"])
    table = Table(title=title)
    table.add_column("scorer")
    for metric in metrics:
        table.add_column(metric, justify="right")
    contenders = [s for s in result.metrics if s != "oracle"]
    best: dict[str, str] = {}
    for metric in metrics:
        values = {
            s: result.metrics[s][metric]
            for s in contenders
            if np.isfinite(result.metrics[s][metric])
        }
        if not values:
            continue
        if metric == "total_ratio":
            best[metric] = min(values, key=lambda s: abs(values[s] - 1))
        else:
            pick = max if HIGHER_IS_BETTER.get(metric, True) else min
            best[metric] = pick(values, key=lambda s: values[s])
    for scorer, values in result.metrics.items():
        cells = []
        for metric in metrics:
            text = f"{values[metric]:.4f}"
            cells.append(f"[bold]{text}[/]" if best.get(metric) == scorer else text)
        style = "dim" if scorer == "oracle" else None
        table.add_row(scorer if scorer != "oracle" else "oracle (truth)", *cells, style=style)
    table.add_section()
    table.add_row(
        "best baseline",
        *(result.lift[m][0] if m in result.lift else "" for m in metrics),
        style="italic",
    )
    table.add_row(
        "model - best (+ is better)",
        *(f"{result.lift[m][1]:+.4f}" if m in result.lift else "" for m in metrics),
        style="italic",
    )
    return table


def catalogue_segmenter(project: Project, events: pd.DataFrame) -> Segmenter | None:
    """RFM segment and lifecycle stage from the project's catalogue rules, if it has one."""
    if not project.catalogue_dir.is_dir():
        return None
    from training.evaluation import tag_segments

    catalogue = project.catalogue()
    return lambda test: tag_segments(test, events, catalogue)


def _progress(status: Any) -> Callable[[str], None]:
    def update(message: str) -> None:
        console.log(message)
        status.update(message)

    return update


def _registry_alias_mover(project: Project) -> Callable[[str, str], None]:
    registry = project.registry()

    def move(name: str, version: str) -> None:
        registry.move_alias(
            name,
            "challenger",
            version,
            expected=registry.alias_version(name, "challenger"),
            actor=default_actor(),
            action="train",
            reason="newly trained by 'tagsmith train'",
        )

    return move


@click.command()
@click.argument("target", type=_TARGET)
@click.option(
    "--horizon",
    default=None,
    metavar="DAYS",
    help="Label horizon, e.g. 90d (default: training.horizon_days in tagsmith.yaml).",
)
@click.option("--cutoffs", default=None, metavar="DATES", help=_CUTOFF_HELP)
@_truth_option
@pass_project
def train(
    project: Project, target: str, horizon: str | None, cutoffs: str | None, truth_path: Path | None
) -> None:
    """Train the churn or value predictor, compare it with baselines, register it.

    The model is logged to MLflow with its plots and model card, registered as
    churn-predictor / value-predictor, and given the alias 'challenger'.
    """
    from training.pipeline import train_predictor
    from training.tracking import log_training

    config = _config(project, horizon)
    store, customers, events = _facts(project)
    spec = project.feature_spec()
    oracle = oracle_from_truth(truth_path, target, config.horizon_days)
    with console.status(f"Training the {target} predictor", spinner="dots") as status:
        result = train_predictor(
            customers,
            events,
            target=target,  # type: ignore[arg-type]
            config=config,
            feature_builder=build_features,
            spec=spec,
            spec_hash=spec_hash(spec),
            facts_fingerprint=store.fingerprint(),
            cutoffs=_cutoffs(cutoffs),
            oracle=oracle,
            progress=_progress(status),
            segmenter=catalogue_segmenter(project, events),
        )
        status.update("Logging to MLflow and registering")
        registered = log_training(
            result,
            tracking_uri=project.mlflow_tracking_uri,
            artifacts_dir=project.mlflow_artifacts_dir,
            config=config.model_dump(),
            set_alias=_registry_alias_mover(project),
        )
    console.print(
        results_table(
            result,
            f"{target}: test cutoff {result.plan.test.date()}, {result.rows['test']:,} customers",
        )
    )
    for message in result.warnings:
        console.print(f"[yellow]Warning:[/] {message}", soft_wrap=True)
    console.print(
        f"Registered [bold]{registered.model_name}[/] version {registered.version} as "
        f"'challenger' (run {registered.run_id}). Promote with: tagsmith models promote "
        f"{registered.model_name}"
    )


def _model_ref(alias: str | None, version: int | None) -> str:
    if alias and version is not None:
        raise click.UsageError("Give --alias or --version, not both.")
    return str(version) if version is not None else (alias or "champion")


@click.command()
@click.argument("target", type=_TARGET)
@_model_choice
@click.option("--cutoffs", default=None, metavar="DATES", help=_CUTOFF_HELP)
@_truth_option
@pass_project
def evaluate(
    project: Project,
    target: str,
    alias: str | None,
    version: int | None,
    cutoffs: str | None,
    truth_path: Path | None,
) -> None:
    """Score a registered model on the latest labelled cutoff against the baselines."""
    from training.pipeline import evaluate_model

    model, label = _load(project, target, _model_ref(alias, version))
    config = project.config.training
    _store, customers, events = _facts(project)
    oracle = oracle_from_truth(truth_path, target, model.contract.horizon_days)
    with console.status(f"Evaluating {label}", spinner="dots") as status:
        comparison = evaluate_model(
            customers,
            events,
            model=model,
            config=config,
            feature_builder=build_features,
            spec=project.feature_spec(),
            cutoffs=_cutoffs(cutoffs),
            oracle=oracle,
            progress=_progress(status),
            segmenter=catalogue_segmenter(project, events),
        )
    console.print(
        results_table(
            comparison,
            f"{label}: test cutoff {comparison.plan.test.date()}, "
            f"{len(comparison.test):,} customers",
        )
    )


def _load(project: Project, target: str, ref: str) -> tuple[Any, str]:
    name = REGISTERED_MODEL_NAMES[target]
    registry = project.registry()
    version = registry.resolve(name, ref)
    loaded = registry.load(name, version)
    return loaded.scoring, loaded.label


def _write_atomic(frame: pd.DataFrame, out: Path) -> None:
    if out.suffix == ".parquet":
        write_atomic(out, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False))


# The column each target's prediction is written to by `tagsmith predict`.
PREDICTION_COLUMNS = {"churn": "churn_probability", "value": "predicted_value"}


def population_scores(
    model: Any,
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    spec: FeatureSpec,
    label: str,
) -> pd.DataFrame:
    """Predictions for every customer with a purchase before ``as_of`` (the label population).

    Columns: ``customer_id``, ``churn_probability`` (P(no purchase in the horizon)) or
    ``predicted_value`` (expected net spend in the horizon), ``model_name``,
    ``model_version``, ``horizon_days`` and ``as_of``.
    """
    buyers = events.loc[
        (events["event_type"] == "purchase") & (events["occurred_at"] < as_of), "customer_id"
    ].unique()
    feats = build_features(customers, events, as_of=as_of, spec=spec)
    feats = feats.loc[feats["customer_id"].isin(buyers)].reset_index(drop=True)
    contract = model.contract
    name, _, version = label.rpartition("/")
    return pd.DataFrame(
        {
            "customer_id": feats["customer_id"].astype("string"),
            PREDICTION_COLUMNS[contract.target]: model.score(feats),
            "model_name": name,
            "model_version": version,
            "horizon_days": int(contract.horizon_days),
            "as_of": as_of,
        }
    )


@click.command()
@click.argument("target", type=_TARGET)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="DATE",
    help="Score as of this date (default: the day after the last event).",
)
@_model_choice
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file: .csv or .parquet (customer_id, churn_probability or predicted_value, "
    "model_name, model_version, horizon_days, as_of).",
)
@overwrite_option
@pass_project
def predict(
    project: Project,
    target: str,
    as_of: str | None,
    alias: str | None,
    version: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Score every customer who has bought before AS_OF with a registered model."""
    if out.suffix not in (".csv", ".parquet"):
        raise click.BadParameter(
            f"expected a .csv or .parquet file. Got {out.name!r}.", param_hint="--out"
        )
    out = guard_out(project, out, overwrite)
    try:
        stamp = None if as_of is None else normalize_as_of(as_of)
    except FeaturesError as exc:
        raise click.BadParameter(str(exc), param_hint="--as-of") from exc
    model, label = _load(project, target, _model_ref(alias, version))
    store, customers, events = _facts(project)
    if stamp is None:
        stamp = store.last_event_at().normalize() + pd.Timedelta(days=1)
    with console.status(f"Scoring with {label} as of {stamp.date()}", spinner="dots"):
        scores = population_scores(
            model, customers, events, as_of=stamp, spec=project.feature_spec(), label=label
        )
        if scores.empty:
            raise TrainingError(
                f"Expected customers with a purchase before {stamp.date()} to score. Got none."
            )
        _write_atomic(scores, out)
    s = scores[PREDICTION_COLUMNS[target]]
    console.print(
        f"Wrote {len(scores):,} {PREDICTION_COLUMNS[target]} predictions for the next "
        f"{model.contract.horizon_days} days from {label} as of {stamp.date()} to {out} "
        f"(mean {s.mean():.4f}, median {s.median():.4f}, max {s.max():.4f})."
    )
