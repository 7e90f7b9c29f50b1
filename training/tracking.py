"""MLflow tracking and registration of a training run.

A run of experiment ``tagsmith-<target>`` records:

- params: target, horizon, cutoffs, estimator settings, row counts, feature count;
- tags: ``spec_hash``, ``facts_fingerprint``, ``test_cutoff``, ``target``;
- metrics: the model's test metrics under their plain names (``auc``, ``brier``,
  ``normalized_gini``, ...), each baseline's as ``baseline_<name>_<metric>``, the
  oracle's as ``oracle_<metric>`` (synthetic data), and the improvement over the best
  baseline as ``lift_<metric>`` (positive = better);
- artifacts: ``plots/`` (calibration, gain/lift, feature importance by gain and by
  SHAP, predicted vs actual), ``model_card.md``, ``tables/`` (metrics, per-segment
  metrics, importance, calibration and gain tables as CSV);
- the model: the LightGBM booster (one thread) with the model contract in its
  ``metadata``, a signature typing categoricals as strings and an input example
  (the pyfunc flavor takes those typed features: :mod:`training.mlflow_model`),
  registered as ``churn-predictor`` / ``value-predictor`` and given the alias
  ``challenger``. Model-version tags repeat the target, horizon, test cutoff, lineage
  and headline metrics.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.contract import REGISTERED_MODEL_NAMES
from scoring.loading import mlflow_uris
from training import mlflow_model
from training.errors import TrainingError
from training.pipeline import TrainingResult

__all__ = [
    "CHALLENGER",
    "RegisteredRun",
    "ensure_experiment",
    "experiment_name",
    "log_training",
    "model_card",
    "single_thread_booster",
    "write_plots",
]

CHALLENGER = "challenger"
_PIP_REQUIREMENTS = ["lightgbm==4.7.0", "numpy<3", "pandas<4", "scikit-learn"]


def single_thread_booster(booster: lgb.Booster) -> lgb.Booster:
    """A copy of ``booster`` whose saved parameters predict on one thread.

    A loaded booster takes its parameters from the model text, and serving scores
    one row at a time, where a second thread costs far more than it saves.
    """
    text = re.sub(r"\[num_threads: \d+\]", "[num_threads: 1]", booster.model_to_string())
    return lgb.Booster(model_str=text)


def experiment_name(target: str) -> str:
    """The MLflow experiment of a target's training runs."""
    return f"tagsmith-{target}"


@dataclass(frozen=True)
class RegisteredRun:
    """Where a training run was recorded.

    Attributes:
        run_id: MLflow run id.
        experiment_id: MLflow experiment id.
        model_name: Registered model name.
        version: Registered model version (string, as MLflow gives it).
        model_uri: ``models:/NAME/VERSION``.
    """

    run_id: str
    experiment_id: str
    model_name: str
    version: str
    model_uri: str


def ensure_experiment(name: str, artifacts_dir: Path) -> str:
    """Id of experiment ``name``, created with an explicit artifact folder if missing."""
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (artifacts_dir / name).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return str(mlflow.create_experiment(name, artifact_location=location.as_uri()))


# What each registered model is, shown by the MLflow UI and `tagsmith models list`; each
# version's description is its model card.
MODEL_DESCRIPTIONS = {
    "churn": (
        "Tagsmith churn predictor: probability that a customer who has bought before makes "
        "no purchase in the horizon after the cutoff (LightGBM on point-in-time features, "
        "calibrated). Feeds the churn_risk tag. Each version's description is its model card."
    ),
    "value": (
        "Tagsmith value predictor: expected net purchase amount of a customer in the horizon "
        "after the cutoff (LightGBM, Tweedie). Feeds the predicted value tag. Each version's "
        "description is its model card."
    ),
}
_DESCRIPTION_LIMIT = 5000
# Where the data came from, relative to the project (a dataset source, not a file read).
FACTS_SOURCE = "data/facts"


def default_run_name(result: TrainingResult) -> str:
    """A readable run name: target, horizon and test cutoff (e.g. ``churn-90d-2024-10-03``)."""
    return f"{result.target}-{result.plan.horizon_days}d-{result.plan.test.date().isoformat()}"


def _log_datasets(result: TrainingResult, signature: Any) -> None:
    """Dataset inputs of the run: the training facts (by fingerprint) and the test rows.

    Only digests, schemas and row counts reach MLflow, never the rows themselves.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():
        # MLflow registers two local-file source classes and says it picks one: either is right.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(FACTS_SOURCE)
    plan = result.plan
    training = MetaDataset(  # type: ignore[abstract]  # concrete at run time
        source,
        name=f"{result.target}-training-{plan.train[0].date()}..{plan.validation.date()}",
        digest=(result.contract.facts_fingerprint or "unknown")[:16],
        schema=signature.inputs,
    )
    mlflow.log_input(training, context="training")
    with warnings.catch_warnings():
        # The hint is about integer model inputs missing at inference time; these are
        # logged test rows whose integer columns (labels, counts) are complete.
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
        test = from_pandas(
            result.test,
            source=source,
            targets=result.target if result.target in result.test.columns else None,
            name=f"{result.target}-test-{plan.test.date()}",
        )
        mlflow.log_input(test, context="test")  # the schema is inferred here, lazily


def _params(result: TrainingResult, config: dict[str, Any]) -> dict[str, Any]:
    plan = result.plan
    return {
        "target": result.target,
        "horizon_days": plan.horizon_days,
        "train_cutoffs": ",".join(c.date().isoformat() for c in plan.train),
        "validation_cutoff": plan.validation.date().isoformat(),
        "test_cutoff": plan.test.date().isoformat(),
        "n_features": len(result.contract.feature_names),
        "n_categorical": len(result.contract.categorical_levels),
        "rows_train": result.rows["train"],
        "rows_validation": result.rows["validation"],
        "rows_test": result.rows["test"],
        "best_iteration": int(
            result.estimator.booster_.best_iteration
            or result.estimator.booster_.current_iteration()
        ),
        **{f"config_{k}": v for k, v in config.items()},
    }


def _metrics(result: TrainingResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for scorer, values in result.metrics.items():
        prefix = (
            ""
            if scorer == "model"
            else ("oracle_" if scorer == "oracle" else f"baseline_{scorer}_")
        )
        for metric, value in values.items():
            if np.isfinite(value):
                out[f"{prefix}{metric}"] = float(value)
    for metric, (_, delta) in result.lift.items():
        if np.isfinite(delta):
            out[f"lift_{metric}"] = float(delta)
    for stage, secs in result.seconds.items():
        out[f"seconds_{stage}"] = float(secs)
    return out


def log_training(
    result: TrainingResult,
    *,
    tracking_uri: str,
    artifacts_dir: Path,
    config: dict[str, Any] | None = None,
    alias: str = CHALLENGER,
    run_name: str | None = None,
    set_alias: Callable[[str, str], None] | None = None,
) -> RegisteredRun:
    """Record ``result`` in MLflow, register the model and point ``alias`` at it.

    ``set_alias(name, version)``, when given, moves the alias instead of a plain
    MLflow call (the CLI passes the registry's recorded, locked alias move).

    Raises:
        TrainingError: MLflow refused the run or the registration.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Runs and registration follow MLflow's process-wide URIs: point both at this
    # registry for this call only and put back what was there (a notebook or service
    # training into two projects must not write the second into the first).
    with mlflow_uris(tracking_uri):
        name = REGISTERED_MODEL_NAMES[result.target]
        contract = result.contract
        booster = single_thread_booster(result.estimator.booster_)
        example = result.input_example
        if example is None:
            raise TrainingError("Expected an input example in the training result. Got none.")
        # Callers of the pyfunc flavor send features as they are: categoricals as strings.
        typed, signature = mlflow_model.typed_signature(booster, example, contract)
        try:
            experiment_id = ""
            if not os.environ.get("MLFLOW_RUN_ID"):
                experiment_id = ensure_experiment(experiment_name(result.target), artifacts_dir)
            # Under `mlflow run`, MLFLOW_RUN_ID names the run it created: log into that one.
            joined = os.environ.get("MLFLOW_RUN_ID")
            if joined:
                experiment_id = str(mlflow.get_run(joined).info.experiment_id)
            with mlflow.start_run(
                run_id=joined or None,
                experiment_id=None if joined else experiment_id,
                run_name=None if joined else (run_name or default_run_name(result)),
            ) as run:
                mlflow.log_params(_params(result, config or {}))
                _log_datasets(result, signature)
                mlflow.set_tags(
                    {
                        "target": result.target,
                        "spec_hash": contract.spec_hash,
                        "facts_fingerprint": contract.facts_fingerprint,
                        "test_cutoff": result.plan.test.date().isoformat(),
                        "horizon_days": str(result.plan.horizon_days),
                        "split": "customer-grouped" if result.plan.grouped else "time",
                        "champion_candidate": result.champion,
                        "warnings": " | ".join(result.warnings)[:4000] or "none",
                    }
                )
                mlflow.log_metrics(_metrics(result))
                with tempfile.TemporaryDirectory(prefix="tagsmith-run-") as tmp:
                    folder = Path(tmp)
                    write_plots(result, folder / "plots")
                    _write_tables(result, folder / "tables")
                    (folder / "model_card.md").write_text(model_card(result), encoding="utf-8")
                    mlflow.log_artifacts(str(folder))
                info = mlflow_model.log_model(
                    booster, contract, typed, signature, pip_requirements=_PIP_REQUIREMENTS
                )
                version = mlflow.register_model(
                    info.model_uri,
                    name,
                    tags={
                        "target": result.target,
                        "horizon_days": str(result.plan.horizon_days),
                        "test_cutoff": result.plan.test.date().isoformat(),
                        "spec_hash": contract.spec_hash,
                        "facts_fingerprint": contract.facts_fingerprint,
                        "loses_to_baseline": ",".join(
                            m for m, (_, delta) in result.lift.items() if delta < 0
                        )
                        or "none",
                        **{f"metric_{k}": f"{v:.6g}" for k, v in result.metrics["model"].items()},
                    },
                )
                client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
                client.update_registered_model(name, description=MODEL_DESCRIPTIONS[result.target])
                client.update_model_version(
                    name, str(version.version), description=model_card(result)[:_DESCRIPTION_LIMIT]
                )
                if set_alias is None:
                    client.set_registered_model_alias(name, alias, str(version.version))
                else:
                    set_alias(name, str(version.version))
        except MlflowException as exc:
            raise TrainingError(
                f"MLflow at {tracking_uri} refused the training run: {exc}"
            ) from exc
    return RegisteredRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_name=name,
        version=str(version.version),
        model_uri=f"models:/{name}/{version.version}",
    )


def _write_tables(result: TrainingResult, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result.metrics_table().to_csv(folder / "metrics.csv", index_label="scorer")
    result.segment_metrics.to_csv(folder / "segment_metrics.csv", index=False)
    result.importance.to_csv(folder / "feature_importance.csv", index=False)
    for name, table in result.curves.items():
        table.to_csv(folder / f"{name}.csv", index=False)


def write_plots(result: TrainingResult, folder: Path) -> list[Path]:
    """PNG plots of ``result`` into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import calibration_table, gain_table

    folder.mkdir(parents=True, exist_ok=True)
    y = result.test[result.target].to_numpy(dtype=np.float64)
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)

    if result.target == "churn":
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
        for scorer, score in result.scores.items():
            cal = calibration_table(y, score)
            ax.plot(cal["predicted"], cal["observed"], marker="o", ms=3, label=scorer)
        ax.set(
            xlabel="mean predicted P(churn)",
            ylabel="observed churn rate",
            title="Calibration on the test cutoff",
        )
        ax.legend(fontsize=8)
        save(fig, "calibration.png")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    for scorer, score in result.scores.items():
        gain = gain_table(y, score)
        ax1.plot(np.r_[0, gain["population_share"]], np.r_[0, gain["gain"]], label=scorer)
        ax2.plot(gain["population_share"], gain["lift"], label=scorer)
    ax1.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    what = "churners" if result.target == "churn" else "spend"
    ax1.set(
        xlabel="share of customers (highest scores first)",
        ylabel=f"share of {what} captured",
        title="Cumulative gain",
    )
    ax2.axhline(1, color="grey", ls="--", lw=1)
    ax2.set(xlabel="share of customers", ylabel="lift", title="Lift")
    ax1.legend(fontsize=8)
    save(fig, "gain_lift.png")

    top = result.importance.head(20).iloc[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.3 * len(top) + 1.5))
    ax1.barh(top["feature"], top["gain"])
    ax1.set(title="Importance: total gain", xlabel="gain")
    by_shap = result.importance.sort_values("shap").tail(20)
    ax2.barh(by_shap["feature"], by_shap["shap"])
    ax2.set(title="Importance: mean |SHAP| (LightGBM pred_contrib)", xlabel="mean |SHAP|")
    save(fig, "feature_importance.png")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    model = result.scores["model"]
    order = np.argsort(model, kind="stable")
    deciles = np.array_split(order, 10)
    pred = [model[d].mean() for d in deciles]
    actual = [y[d].mean() for d in deciles]
    ax.plot(pred, actual, marker="o", label="model, by predicted decile")
    lo, hi = min(pred + actual), max(pred + actual)
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="predicted = actual")
    unit = "P(churn)" if result.target == "churn" else "net spend in horizon"
    ax.set(
        xlabel=f"mean predicted {unit}",
        ylabel=f"mean actual {unit}",
        title="Predicted vs actual (test cutoff)",
    )
    ax.legend(fontsize=8)
    save(fig, "predicted_vs_actual.png")
    return paths


def _markdown_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(["", *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _candidate_lines(result: TrainingResult) -> list[str]:
    from training.candidates import SELECTION_METRIC

    metric = SELECTION_METRIC[result.target]
    lines = [
        f"| candidate | leaves | validation {metric} | test {metric} | |",
        "|---|---|---|---|---|",
    ]
    for c in result.candidates:
        lines.append(
            f"| {c.name} | {c.num_leaves} | {c.validation.get(metric, float('nan')):.4f} | "
            f"{c.test.get(metric, float('nan')):.4f} | "
            f"{'champion' if c.name == result.champion else ''} |"
        )
    lines.append(
        "Baselines (recency, rfm, linear, bgnbd, paretonbd) are scored beside the champion "
        "above; they are references, not registered candidates."
    )
    return lines


def model_card(result: TrainingResult) -> str:
    """A markdown model card: what the model predicts, on what, how well, and limits."""
    c = result.contract
    plan = result.plan
    what = (
        f"P(no purchase in the {plan.horizon_days} days from the cutoff)"
        if result.target == "churn"
        else f"expected net purchase amount in the {plan.horizon_days} days from the cutoff"
    )
    lift_lines = [
        f"- {metric}: {delta:+.4g} vs best baseline `{best}`"
        for metric, (best, delta) in result.lift.items()
    ]
    top = ", ".join(f"`{f}`" for f in result.importance["feature"].head(10))
    dropped = ", ".join(f"`{k}` ({v})" for k, v in result.dropped_features.items()) or "none"
    calibration: str = c.calibration.kind if c.calibration is not None else "none"
    if c.blend is not None:
        b = c.blend
        calibration = (
            f"none; blended with Pareto/NBD (weight {b.weight} on LightGBM, r={b.r:.3g}, "
            f"alpha={b.alpha:.3g}, s={b.s:.3g}, beta={b.beta:.3g} weeks, fitted on every "
            f"customer at the scoring date; offset {b.offset:+.3f} without labels)"
        )
    split = (
        "customer-grouped (history too short for a time split: 60% of customers train at "
        "every cutoff, 20% validate and 20% test at the latest; test metrics are in-period)"
        if plan.grouped
        else "time (rolling origins)"
    )
    warnings = [f"- {w}" for w in result.warnings] or ["- none"]
    return "\n".join(
        [
            f"# Model card: {REGISTERED_MODEL_NAMES[result.target]}",
            "",
            f"**Predicts**: {what}, for every customer with a purchase before the cutoff.",
            "",
            "## Data and labels",
            f"- Training cutoffs: {', '.join(d.isoformat() for d in c.train_cutoffs)}",
            f"- Validation cutoff (early stopping, calibration: {calibration}): "
            f"{plan.validation.date()}",
            f"- Test cutoff (metrics below): {plan.test.date()}",
            f"- Split: {split}",
            f"- Rows: {result.rows}",
            "- Each slice's label horizon ends by the next slice's cutoff: no outcome used in "
            "fitting happens after the cutoff it is judged on.",
            f"- Feature spec hash `{c.spec_hash or 'unknown'}`, facts fingerprint "
            f"`{c.facts_fingerprint or 'unknown'}`",
            "",
            "## Test metrics (model, baselines, oracle where known)",
            _markdown_table(result.metrics_table()),
            "",
            "## Candidates (the champion is chosen on validation, never on test)",
            *_candidate_lines(result),
            "",
            "## Improvement over the best baseline (positive is better)",
            *lift_lines,
            "",
            "## Warnings",
            *warnings,
            "",
            "## Inputs",
            f"{len(c.feature_names)} features ({len(c.categorical_levels)} categorical). "
            f"Most important by gain: {top}. Not used: {dropped}.",
            "",
            "## Limits",
            "- Trained on past cutoffs: a shift in customer behaviour or in the feature spec "
            "degrades it; retrain when the facts change materially.",
            "- Scores are for customers who have bought before; prospects are out of scope.",
            "- Per-segment metrics are in `tables/segment_metrics.csv`.",
            "",
        ]
    )
