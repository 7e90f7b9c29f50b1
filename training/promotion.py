"""Champion/challenger promotion behind gates, rollback, and producer contests.

A promotion re-scores the candidate and the current champion on the same labelled
window (the latest cutoff whose horizon is fully observed), judges the candidate with
the configured gates (:mod:`training.gates`), and moves the ``champion`` alias with a
compare-and-set under the model's file lock. A version that cannot be loaded or fails
its smoke prediction is refused before any gate, even with ``force``. Every outcome
(promoted, rejected, refused, forced, rolled back) goes to the audit sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from training.alias_history import AliasEvent
from training.errors import ModelLoadError, PromotionError
from training.gates import (
    METRIC_DIRECTIONS,
    PRIMARY_METRIC,
    GateReport,
    PromotionConfig,
    evaluate_gates,
    evaluate_gates_against_baselines,
)
from training.registry import CHALLENGER, CHAMPION, LoadedModel, ModelRegistry, task_of

__all__ = [
    "TAG_OF_TASK",
    "AuditSink",
    "BaselineScorer",
    "LabelledWindow",
    "PromotionResult",
    "RollbackResult",
    "contest",
    "promote",
    "rollback",
    "rule_producer_scores",
    "score_predictions",
]

# The catalogued model tag each predictor produces (recorded in the audit log).
TAG_OF_TASK = {"churn": "churn_risk", "value": "predicted_value"}


class AuditSink(Protocol):
    """Where actions are recorded: ``tags.audit.AuditLog`` has this method."""

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        tags: list[str],
        n_customers: int,
        query: str,
        extra: dict[str, Any],
    ) -> Any:
        """Append one entry."""


@dataclass(frozen=True)
class LabelledWindow:
    """The population at one cutoff with its features and observed outcome.

    Attributes:
        task: 'churn' (labels 0/1) or 'value' (net spend in the horizon).
        cutoff: The cutoff: features use only events before it.
        horizon_days: Length of the observed outcome window after the cutoff.
        features: One row per customer of the population (``customer_id`` first).
        labels: The outcome of each row, aligned with ``features``.
    """

    task: str
    cutoff: pd.Timestamp
    horizon_days: int
    features: pd.DataFrame
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.features) != len(self.labels):
            raise PromotionError(
                f"Expected one label per feature row in the {self.task} window at "
                f"{self.cutoff}. Got {len(self.features)} rows and {len(self.labels)} labels."
            )
        if len(self.features) == 0:
            raise PromotionError(
                f"Expected customers in the {self.task} window at {self.cutoff}. Got none."
            )

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (for the audit log and history)."""
        return {
            "cutoff": str(self.cutoff),
            "horizon_days": self.horizon_days,
            "n_customers": len(self.labels),
            "positive_rate" if self.task == "churn" else "label_mean": float(np.mean(self.labels)),
        }


# Baseline name -> its scores on a window (fitted on earlier cutoffs only).
BaselineScorer = Callable[[LabelledWindow], Mapping[str, np.ndarray]]


def score_predictions(task: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The gate and contest metrics of one producer's scores on a labelled window.

    The same metrics training reports (``training.evaluation.metrics_for``), so a
    re-scored number means what the logged one means.

    Args:
        task: 'churn' (labels 0/1, scores = churn probability) or 'value'.
        labels: Observed outcomes.
        scores: Predictions aligned with ``labels``.

    Returns:
        Metric name -> value (NaN where the window cannot define it).
    """
    from training.evaluation import metrics_for

    if task not in METRIC_DIRECTIONS:
        raise PromotionError(f"Expected task 'churn' or 'value'. Got {task!r}.")
    return metrics_for(
        task,  # type: ignore[arg-type]
        np.asarray(labels, dtype=np.float64),
        np.asarray(scores, dtype=np.float64),
    )


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion attempt did.

    Attributes:
        name: Registered model.
        candidate: The version judged.
        previous_champion: The champion it was judged against (None if none).
        report: The gate table.
        promoted: Whether ``champion`` now points at the candidate.
        forced: Whether the gates were overridden.
        reason: The reason given (required with force).
        window: Summary of the labelled window used.
        scores: Producer label -> metrics, for everything scored on the window.
        event: The alias-history entry, when promoted.
    """

    name: str
    candidate: str
    previous_champion: str | None
    report: GateReport
    promoted: bool
    forced: bool
    reason: str
    window: dict[str, Any]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    event: AliasEvent | None = None


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did: ``champion`` moved from ``from_version`` to ``to_version``."""

    name: str
    from_version: str
    to_version: str
    event: AliasEvent


def _audit(
    audit: AuditSink | None,
    *,
    actor: str,
    role: str,
    action: str,
    task: str,
    n_customers: int,
    query: str,
    extra: dict[str, Any],
) -> None:
    if audit is not None:
        audit.append(
            actor=actor,
            role=role,
            action=action,
            tags=[TAG_OF_TASK[task]],
            n_customers=n_customers,
            query=query,
            extra=extra,
        )


def _load_checked(
    registry: ModelRegistry, name: str, version: str, features: pd.DataFrame | None, rows: int
) -> LoadedModel:
    loaded = registry.load(name, version)
    if features is not None:
        loaded.smoke_test(features.head(rows))
    return loaded


def _report_dict(report: GateReport) -> list[dict[str, Any]]:
    return [
        {
            "metric": o.metric,
            "candidate": o.candidate,
            "reference": o.reference,
            "reference_name": o.reference_name,
            "allowed": o.allowed,
            "passed": o.passed,
        }
        for o in report.outcomes
    ]


def _candidate(
    registry: ModelRegistry, name: str, version: str | None, window: LabelledWindow
) -> tuple[str, str | None, str]:
    """(candidate version, current champion or None, task), checked for a promotion."""
    registry.sync_history(name)
    candidate = (
        registry.resolve(name, version) if version else registry.alias_version(name, CHALLENGER)
    )
    if candidate is None:
        raise PromotionError(
            f"Expected a '{CHALLENGER}' alias on '{name}' (or --version). Got none: "
            "train one with 'tagsmith train' or name a version."
        )
    task = task_of(name)
    if window.task != task:
        raise PromotionError(
            f"Expected a {task} window to judge '{name}'. Got a {window.task} window."
        )
    champion = registry.alias_version(name, CHAMPION)
    if champion == candidate:
        raise PromotionError(f"Version {candidate} of '{name}' is already the champion.")
    return candidate, champion, task


def _judge(
    registry: ModelRegistry,
    name: str,
    window: LabelledWindow,
    config: PromotionConfig,
    cand_model: Any,
    candidate: str,
    champion: str | None,
    baselines: BaselineScorer | None,
) -> tuple[dict[str, dict[str, float]], GateReport]:
    """Score the candidate (and the champion, else the baselines) on ``window``; run the gates.

    An unloadable champion scores nothing, so every gate fails and only ``--force`` can
    replace it.
    """
    task = window.task
    scores = {
        f"v{candidate}": score_predictions(task, window.labels, cand_model.predict(window.features))
    }
    gates = config.gates(task)
    if champion is not None:
        try:
            champ_model = registry.load(name, champion)
            scores[f"v{champion}"] = score_predictions(
                task, window.labels, champ_model.predict(window.features)
            )
            champ_metrics = scores[f"v{champion}"]
        except ModelLoadError:
            champ_metrics = {}  # every gate then fails: only --force can replace it
        report = evaluate_gates(
            task,
            scores[f"v{candidate}"],
            champ_metrics,
            gates,
            candidate_name=f"v{candidate}",
            champion_name=f"champion v{champion}",
        )
    else:
        base_metrics = {}
        if baselines is not None:
            for base_name, base_scores in baselines(window).items():
                base_metrics[base_name] = score_predictions(task, window.labels, base_scores)
                scores[f"baseline {base_name}"] = base_metrics[base_name]
        report = evaluate_gates_against_baselines(
            task,
            scores[f"v{candidate}"],
            base_metrics,
            gates,
            margin=config.baseline_margin,
            candidate_name=f"v{candidate}",
        )
    return scores, report


def promote(
    registry: ModelRegistry,
    name: str,
    window: LabelledWindow,
    config: PromotionConfig,
    *,
    actor: str,
    role: str = "ops",
    version: str | None = None,
    force: bool = False,
    reason: str = "",
    baselines: BaselineScorer | None = None,
    audit: AuditSink | None = None,
) -> PromotionResult:
    """Judge a version against the champion on ``window`` and promote it if the gates pass.

    Args:
        registry: The model registry.
        name: Registered model (``churn-predictor`` / ``value-predictor``).
        window: The latest labelled window, built with training's labels and features.
        config: Gates and limits.
        actor: Who asks (recorded).
        role: The actor's role (recorded in the audit log).
        version: The candidate; default the current ``challenger``.
        force: Promote even when gates fail (never when the model cannot load).
        reason: Why; required with ``force``.
        baselines: Scores the baselines on ``window``; needed when there is no champion.
        audit: Where to record the outcome.

    Returns:
        The result; ``promoted`` is False when the gates failed (nothing changed).

    Raises:
        PromotionError: No candidate, already champion, force without reason.
        ModelLoadError: The candidate cannot be loaded or fails its smoke prediction.
        PromotionConflict: Another promotion moved the champion meanwhile.
    """
    if force and not reason.strip():
        raise PromotionError(
            "Expected a --reason with --force (it is recorded in the history and audit "
            "log). Got none."
        )
    candidate, champion, task = _candidate(registry, name, version, window)
    query = f"models promote {name} --version {candidate}"
    n = len(window.labels)
    try:
        cand_model = _load_checked(registry, name, candidate, window.features, config.smoke_rows)
    except ModelLoadError as exc:
        _audit(
            audit,
            actor=actor,
            role=role,
            action="models.promote.refused",
            task=task,
            n_customers=n,
            query=query,
            extra={"version": candidate, "error": str(exc)},
        )
        raise
    scores, report = _judge(
        registry, name, window, config, cand_model, candidate, champion, baselines
    )
    extra = {
        "version": candidate,
        "previous_champion": champion,
        "window": window.describe(),
        "gates": _report_dict(report),
        "passed": report.passed,
        "forced": force,
        "reason": reason,
    }
    if not report.passed and not force:
        _audit(
            audit,
            actor=actor,
            role=role,
            action="models.promote.rejected",
            task=task,
            n_customers=n,
            query=query,
            extra=extra,
        )
        return PromotionResult(
            name, candidate, champion, report, False, False, reason, window.describe(), scores
        )
    forced = force and not report.passed
    event = registry.move_alias(
        name,
        CHAMPION,
        candidate,
        expected=champion,
        actor=actor,
        action="force-promote" if forced else "promote",
        reason=reason,
        details={"window": window.describe(), "gates": _report_dict(report)},
    )
    _audit(
        audit,
        actor=actor,
        role=role,
        action="models.promote.forced" if forced else "models.promote",
        task=task,
        n_customers=n,
        query=query,
        extra=extra,
    )
    return PromotionResult(
        name, candidate, champion, report, True, forced, reason, window.describe(), scores, event
    )


def rollback(
    registry: ModelRegistry,
    name: str,
    *,
    actor: str,
    role: str = "ops",
    reason: str = "",
    features: pd.DataFrame | None = None,
    smoke_rows: int = 100,
    audit: AuditSink | None = None,
) -> RollbackResult:
    """Point ``champion`` back at the version that held it before the current one.

    Args:
        registry: The model registry.
        name: Registered model.
        actor: Who asks (recorded).
        role: The actor's role (recorded in the audit log).
        reason: Why (recorded).
        features: Rows for the smoke prediction of the restored version (optional).
        smoke_rows: How many of them to use.
        audit: Where to record the rollback.

    Raises:
        PromotionError: No champion, or no earlier champion in the history.
        ModelLoadError: The earlier champion no longer loads or fails its smoke test.
        PromotionConflict: The champion moved meanwhile.
    """
    registry.sync_history(name)
    current = registry.alias_version(name, CHAMPION)
    if current is None:
        raise PromotionError(f"Expected '{name}' to have a champion to roll back. Got none.")
    target = registry.history.rollback_target(name, CHAMPION)
    if target is None:
        raise PromotionError(
            f"Expected an earlier champion of '{name}' in the alias history to restore. "
            f"Got none: v{current} is the first recorded champion."
        )
    task = task_of(name)
    query = f"models rollback {name}"
    try:
        _load_checked(registry, name, target, features, smoke_rows)
    except ModelLoadError as exc:
        _audit(
            audit,
            actor=actor,
            role=role,
            action="models.rollback.refused",
            task=task,
            n_customers=0,
            query=query,
            extra={"version": target, "error": str(exc)},
        )
        raise
    event = registry.move_alias(
        name,
        CHAMPION,
        target,
        expected=current,
        actor=actor,
        action="rollback",
        reason=reason,
    )
    _audit(
        audit,
        actor=actor,
        role=role,
        action="models.rollback",
        task=task,
        n_customers=0,
        query=query,
        extra={"from_version": current, "to_version": target, "reason": reason},
    )
    return RollbackResult(name, current, target, event)


def rule_producer_scores(
    tag_rows: pd.DataFrame, customer_ids: pd.Series, producer: str
) -> np.ndarray:
    """0/1 scores of a rule producer for each customer, from the rule engine's long table.

    Args:
        tag_rows: ``evaluate_tags`` output (customer_id, tag_id, value, ...).
        customer_ids: The window's customers, in order.
        producer: ``tag`` (boolean tag: 1 where a row says true) or ``tag=v1,v2``
            (1 where the customer's value is one of those).

    Returns:
        One float per customer: 1.0 where the rule says so, else 0.0.
    """
    tag_id, _, wanted = producer.partition("=")
    values = [v.strip() for v in wanted.split(",")] if wanted else ["true"]
    rows = tag_rows.loc[(tag_rows["tag_id"] == tag_id) & tag_rows["value"].isin(values)]
    hit = pd.Index(rows["customer_id"].astype(str).unique())
    return np.asarray(customer_ids.astype(str).isin(hit), dtype=np.float64)


def contest(task: str, labels: np.ndarray, producers: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Score every producer of one tag on the same labels, best first.

    Args:
        task: 'churn' or 'value'.
        labels: Point-in-time outcomes of the population.
        producers: Producer label (e.g. 'rule predicted_churn', 'baseline bgnbd',
            'model churn-predictor/3') -> its scores, aligned with ``labels``.

    Returns:
        One row per producer: ``producer`` then each metric, sorted by the task's
        primary metric (best first).
    """
    if task not in METRIC_DIRECTIONS:
        raise PromotionError(f"Expected task 'churn' or 'value'. Got {task!r}.")
    rows = []
    for label, scores in producers.items():
        if len(scores) != len(labels):
            raise PromotionError(
                f"Expected {len(labels)} scores from producer '{label}'. Got {len(scores)}."
            )
        rows.append({"producer": label, **score_predictions(task, labels, scores)})
    frame = pd.DataFrame(rows, columns=["producer", *METRIC_DIRECTIONS[task]])
    primary = PRIMARY_METRIC[task]
    return frame.sort_values(
        primary, ascending=False, na_position="last", kind="stable"
    ).reset_index(drop=True)
