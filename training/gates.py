"""Promotion gates: pure decisions over metric dicts, and their config section.

A gate compares one metric of a candidate model with a reference (the current
champion, or the best baseline when there is no champion yet), both scored on the
same labelled window. The gate passes when the candidate is not worse than the
reference by more than the configured tolerance. Tolerances are in the metric's
own units (``tolerance``) and, optionally, as a fraction of the reference
(``relative_tolerance``); when both are set, both must hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "METRIC_DIRECTIONS",
    "PRIMARY_METRIC",
    "Gate",
    "GateOutcome",
    "GateReport",
    "PromotionConfig",
    "evaluate_gates",
    "evaluate_gates_against_baselines",
]

Task = Literal["churn", "value"]

# Metrics a gate may name, per task, and whether higher is better. These are the keys
# that re-scoring produces (see ``training.promotion.score_predictions``).
METRIC_DIRECTIONS: dict[str, dict[str, bool]] = {
    "churn": {
        "auc": True,
        "pr_auc": True,
        "brier": False,
        "log_loss": False,
        "top_decile_lift": True,
    },
    "value": {
        "normalized_gini": True,
        "spearman": True,
        "mae": False,
        "rmse": False,
        "top_decile_capture": True,
    },
}

# The metric that ranks producers (contests) and must be strictly beaten to replace
# the best baseline when no champion exists.
PRIMARY_METRIC: dict[str, str] = {"churn": "auc", "value": "normalized_gini"}


class Gate(BaseModel):
    """One promotion gate.

    Attributes:
        metric: A metric of the task (``auc``, ``brier``, ``normalized_gini``, ...).
        tolerance: How much worse than the reference the candidate may be, in the
            metric's units (0 means "not worse").
        relative_tolerance: Optionally, how much worse as a fraction of the
            reference's magnitude (0.01 = 1 %); both limits must hold when set.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str
    tolerance: float = Field(default=0.0, ge=0.0)
    relative_tolerance: float | None = Field(default=None, ge=0.0)

    def allowed_worsening(self, reference: float) -> float:
        """The largest worsening (in metric units) this gate accepts against ``reference``."""
        allowed = self.tolerance
        if self.relative_tolerance is not None:
            allowed = min(allowed, self.relative_tolerance * abs(reference))
        return allowed


def _default_churn_gates() -> list[Gate]:
    return [Gate(metric="auc", tolerance=0.005), Gate(metric="brier", tolerance=0.0)]


def _default_value_gates() -> list[Gate]:
    return [Gate(metric="normalized_gini", tolerance=0.0)]


def _default_contest_rules() -> dict[str, list[str]]:
    return {
        "churn_risk": [
            "browse_churn",
            "lifecycle_stage=churned",
            "lifecycle_stage=dormant,churned",
        ],
        "predicted_value": ["rfm_segment=important_value", "value_tier=high"],
    }


class PromotionConfig(BaseModel):
    """The ``promotion`` section of ``tagsmith.yaml``.

    Attributes:
        churn_gates: Gates a churn model must pass against the champion.
        value_gates: Gates a value model must pass against the champion.
        baseline_margin: With no champion yet, the candidate's primary metric (churn
            AUC, value normalised Gini) must beat the best baseline's by more than
            this; every other gate is checked against the best baseline on its metric.
        smoke_rows: Rows of the labelled window used for the smoke prediction.
        lock_timeout_seconds: How long a promotion waits for another one on the same
            model before failing.
        contest_rules: Rule tags that compete with each predicted tag in
            ``tagsmith models contest``: ``tag`` (a boolean tag: 1 where true) or
            ``tag=v1,v2`` (1 where the tag's value is one of those), else 0.
    """

    model_config = ConfigDict(extra="forbid")

    churn_gates: list[Gate] = Field(default_factory=_default_churn_gates)
    value_gates: list[Gate] = Field(default_factory=_default_value_gates)
    baseline_margin: float = Field(default=0.0, ge=0.0)
    smoke_rows: int = Field(default=100, ge=1)
    lock_timeout_seconds: float = Field(default=5.0, ge=0.0)
    contest_rules: dict[str, list[str]] = Field(default_factory=_default_contest_rules)

    @model_validator(mode="after")
    def _known_metrics(self) -> PromotionConfig:
        for task, gates in (("churn", self.churn_gates), ("value", self.value_gates)):
            known = METRIC_DIRECTIONS[task]
            for gate in gates:
                if gate.metric not in known:
                    raise ValueError(
                        f"{task}_gates: expected a metric among {sorted(known)}, "
                        f"got '{gate.metric}'"
                    )
        return self

    def gates(self, task: str) -> list[Gate]:
        """The gates of ``task`` ('churn' or 'value')."""
        return list(self.churn_gates if task == "churn" else self.value_gates)


@dataclass(frozen=True)
class GateOutcome:
    """One row of the gate table.

    Attributes:
        metric: The metric compared.
        higher_is_better: Its direction.
        candidate: The candidate's value.
        reference: The reference's value (NaN when there is none).
        reference_name: Who the reference is ("champion v3", "baseline bgnbd").
        allowed: The largest accepted worsening, in metric units.
        passed: Whether the gate passes.
        note: Why, in words.
        must_beat: The candidate must be strictly better by more than ``-allowed``
            (the primary metric against baselines) rather than merely not worse.
    """

    metric: str
    higher_is_better: bool
    candidate: float
    reference: float
    reference_name: str
    allowed: float
    passed: bool
    note: str
    must_beat: bool = False

    @property
    def delta(self) -> float:
        """Candidate minus reference (positive = higher)."""
        return self.candidate - self.reference


@dataclass(frozen=True)
class GateReport:
    """Every gate of one promotion decision.

    Attributes:
        task: 'churn' or 'value'.
        candidate_name: Who is being promoted ("v4").
        against: 'champion' or 'baselines'.
        outcomes: One row per gate.
    """

    task: str
    candidate_name: str
    against: Literal["champion", "baselines"]
    outcomes: list[GateOutcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every gate passes (and there is at least one)."""
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> list[GateOutcome]:
        """The gates that failed."""
        return [o for o in self.outcomes if not o.passed]


def _worsening(candidate: float, reference: float, higher_is_better: bool) -> float:
    return (reference - candidate) if higher_is_better else (candidate - reference)


def _judge(
    gate: Gate,
    higher_is_better: bool,
    candidate: float | None,
    reference: float | None,
    reference_name: str,
    *,
    strict: bool = False,
    margin: float = 0.0,
) -> GateOutcome:
    cand = math.nan if candidate is None else float(candidate)
    ref = math.nan if reference is None else float(reference)
    if math.isnan(cand):
        return GateOutcome(
            gate.metric,
            higher_is_better,
            cand,
            ref,
            reference_name,
            math.nan,
            False,
            "candidate has no value for this metric",
        )
    if math.isnan(ref):
        return GateOutcome(
            gate.metric,
            higher_is_better,
            cand,
            ref,
            reference_name,
            math.nan,
            False,
            "reference has no value for this metric",
        )
    worse_by = _worsening(cand, ref, higher_is_better)
    if strict:
        # Must beat the reference by more than ``margin``: a tie is not a win.
        allowed = -margin
        passed = worse_by < allowed
        note = "beats the best baseline" if passed else "does not beat the best baseline"
        if margin:
            note += f" by more than {margin:g}"
    else:
        allowed = gate.allowed_worsening(ref)
        # A tiny epsilon keeps float noise (e.g. identical models) from failing a gate.
        passed = worse_by <= allowed + 1e-12
        if worse_by <= 0:
            note = "not worse"
        elif passed:
            note = f"worse by {worse_by:.4g}, within {allowed:.4g}"
        else:
            note = f"worse by {worse_by:.4g}, more than {allowed:.4g}"
    return GateOutcome(
        gate.metric, higher_is_better, cand, ref, reference_name, allowed, passed, note, strict
    )


def evaluate_gates(
    task: str,
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    gates: list[Gate],
    *,
    candidate_name: str = "candidate",
    champion_name: str = "champion",
) -> GateReport:
    """Judge a candidate against the champion, both scored on the same window.

    Args:
        task: 'churn' or 'value' (decides each metric's direction).
        candidate: Metric name -> value of the candidate.
        champion: Metric name -> value of the champion.
        gates: The gates to apply (``PromotionConfig.gates(task)``).
        candidate_name: Label of the candidate in the report.
        champion_name: Label of the champion in the report.

    Returns:
        The report: one outcome per gate; ``passed`` only when all pass.
    """
    directions = METRIC_DIRECTIONS[task]
    report = GateReport(task=task, candidate_name=candidate_name, against="champion")
    for gate in gates:
        report.outcomes.append(
            _judge(
                gate,
                directions[gate.metric],
                candidate.get(gate.metric),
                champion.get(gate.metric),
                champion_name,
            )
        )
    return report


def evaluate_gates_against_baselines(
    task: str,
    candidate: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    gates: list[Gate],
    *,
    margin: float = 0.0,
    candidate_name: str = "candidate",
) -> GateReport:
    """Judge a first candidate (no champion yet) against the best baseline per metric.

    The primary metric (churn AUC, value normalised Gini) must be strictly better than
    the best baseline's by more than ``margin``; every other gate compares with the
    baseline that is best on that gate's metric, with the gate's tolerance.

    Args:
        task: 'churn' or 'value'.
        candidate: Metric name -> value of the candidate.
        baselines: Baseline name -> its metrics, scored on the same window.
        gates: The gates to apply.
        margin: Required lead on the primary metric.
        candidate_name: Label of the candidate in the report.

    Returns:
        The report; it fails when there are no baselines to compare with.
    """
    directions = METRIC_DIRECTIONS[task]
    primary = PRIMARY_METRIC[task]
    report = GateReport(task=task, candidate_name=candidate_name, against="baselines")
    metrics = [primary] + [g.metric for g in gates if g.metric != primary]
    by_metric = {g.metric: g for g in gates}
    for metric in metrics:
        gate = by_metric.get(metric, Gate(metric=metric))
        higher = directions[metric]
        scored = {
            name: float(m[metric])
            for name, m in baselines.items()
            if metric in m and not math.isnan(float(m[metric]))
        }
        if scored:
            best_name = (max if higher else min)(scored, key=lambda n: scored[n])
            ref: float | None = scored[best_name]
            ref_name = f"baseline {best_name}"
        else:
            ref, ref_name = None, "no baseline"
        report.outcomes.append(
            _judge(
                gate,
                higher,
                candidate.get(metric),
                ref,
                ref_name,
                strict=metric == primary,
                margin=margin,
            )
        )
    return report
