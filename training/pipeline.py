"""Training end to end, without I/O: facts -> training set -> model, baselines, oracle -> metrics.

:func:`train_predictor` is what ``tagsmith train``, the MLproject entry point, the
notebook and the quality benchmark all call; :mod:`training.tracking` logs its result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.contract import ModelContract, calibrate, model_matrix, predict_raw
from scoring.loading import ScoringModel
from training.baselines import make_baselines
from training.blend import finish_blend, fit_btyd_parts, scoring_population
from training.candidates import SELECTION_METRIC, Candidate, fit_candidates, score_candidates
from training.config import TrainingConfig
from training.errors import TrainingError
from training.estimators import ChurnClassifier, ValueRegressor
from training.evaluation import (
    calibration_table,
    gain_table,
    lift_over,
    metrics_for,
    segment_metrics,
    simple_segments,
)
from training.importance import ShapJob, importance_table
from training.labels import CutoffPlan, plan_training
from training.scoring_date import AlsoAtScoringDate, scoring_date
from training.split import baseline_losses, data_warnings
from training.training_set import (
    FeatureBuilder,
    TrainingSet,
    build_training_set,
    select_features,
)

__all__ = [
    "Comparison",
    "FeatureBuilder",
    "OracleScorer",
    "TrainingResult",
    "TrainingSet",
    "build_training_set",
    "compare_with_baselines",
    "evaluate_model",
    "select_features",
    "train_predictor",
]

Target = Literal["churn", "value"]
# cutoff -> scores indexed by customer_id (from the generator's latent truth).
OracleScorer = Callable[[pd.Timestamp], pd.Series]
Progress = Callable[[str], None]
# Test rows (keys, labels, history summary, features) -> segment columns, same index.
Segmenter = Callable[[pd.DataFrame], pd.DataFrame]

_KEY = ["customer_id", "cutoff"]


def _noop(_: str) -> None:
    return None


@dataclass
class TrainingResult:
    """Everything a training run produced, ready to log.

    Attributes:
        target: ``churn`` or ``value``.
        contract: The trained model's contract.
        estimator: The fitted estimator (its ``booster_`` is what gets logged).
        plan: The cutoffs.
        test: Test rows: keys, labels, history summary and segments.
        scores: Scores on the test rows per scorer: ``model``, each baseline, and
            ``oracle`` on synthetic data.
        metrics: Metric values per scorer.
        lift: Per metric, the best baseline and the model's improvement over it.
        segment_metrics: Long table of metrics per RFM segment / lifecycle stage.
        importance: Per feature: ``gain`` and mean absolute SHAP (``shap``).
        curves: ``calibration`` (churn) and ``gain`` tables of the model.
        rows: Row counts per slice.
        dropped_features: Feature columns not used, with the reason.
        seconds: Wall time per stage.
        input_example: A few rows of the model matrix (as a frame) for MLflow.
        warnings: What a user should know before trusting the model: a small or
            single-cutoff training set, a customer-grouped (not out-of-time) test, a
            test metric on which a baseline beats the model.
        candidates: Every candidate fitted, with validation and test metrics.
        champion: The candidate chosen on validation (the ``estimator``).
    """

    target: Target
    contract: ModelContract
    estimator: ChurnClassifier | ValueRegressor
    plan: CutoffPlan
    test: pd.DataFrame
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]
    lift: dict[str, tuple[str, float]]
    segment_metrics: pd.DataFrame
    importance: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    rows: dict[str, int]
    dropped_features: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    input_example: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    champion: str = "lightgbm"

    @property
    def baselines(self) -> list[str]:
        """Names of the baselines scored."""
        return [s for s in self.scores if s not in ("model", "oracle")]

    def metrics_table(self) -> pd.DataFrame:
        """Scorers as rows, metrics as columns (model first, oracle last)."""
        return pd.DataFrame(self.metrics).T


def _first_purchase_and_last_event(events: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    if events.empty:
        raise TrainingError("Expected events to train on. Got an empty events table.")
    purchases = events.loc[events["event_type"] == "purchase", "occurred_at"]
    if purchases.empty:
        raise TrainingError("Expected purchase events to label. Got no purchases.")
    return pd.Timestamp(purchases.min()), pd.Timestamp(events["occurred_at"].max())


def _plan(
    events: pd.DataFrame,
    config: TrainingConfig,
    horizon_days: int,
    cutoffs: Sequence[object] | None,
) -> CutoffPlan:
    first, last = _first_purchase_and_last_event(events)
    return plan_training(
        first,
        last,
        horizon_days=horizon_days,
        n_cutoffs=config.n_cutoffs,
        step_months=config.cutoff_step_months,
        cutoffs=cutoffs,
        min_history_days=config.min_history_days,
    )


class _Laps:
    """Wall time per stage, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._clock, 3)
        self._clock = now


def _contract_for(
    target: Target, ts: TrainingSet, *, spec_hash: str, facts_fingerprint: str
) -> ModelContract:
    plan = ts.plan
    return ModelContract(
        target=target,
        horizon_days=plan.horizon_days,
        feature_names=ts.feature_names,
        categorical_levels=ts.categorical_levels,
        spec_hash=spec_hash,
        facts_fingerprint=facts_fingerprint,
        train_cutoffs=[c.date() for c in plan.train],
        validation_cutoffs=[plan.validation.date()],
    )


def _fit_champion(
    target: Target,
    ts: TrainingSet,
    contract: ModelContract,
    *,
    config: TrainingConfig,
    n_jobs: int,
    progress: Progress,
    population: Callable[[], pd.DataFrame],
    events: pd.DataFrame,
    btyd: bool = True,
) -> tuple[Candidate, list[Candidate], ModelContract]:
    """Fit every candidate on the training rows (then, with ``btyd``, the ``blend`` of
    the best one with Pareto/NBD), the champion chosen on validation; its contract."""
    train, val = ts.slice("train"), ts.slice("validation")
    x_val = model_matrix(val, contract)
    y_val = val[target].to_numpy(dtype=np.float64)
    # The blend's Pareto/NBD fits need no booster. Run beside LightGBM on a second
    # thread they measured no faster (200k customers, two rounds) and slowed the boosting
    # when the two cores were busy, so they run first, sharing the validation matrix.
    fits = (
        fit_btyd_parts(
            target,
            contract,
            validation=val,
            population=population,
            seed=config.seed,
            events=events,
            x_val=x_val,
        )
        if btyd
        else None
    )
    champion, candidates = fit_candidates(
        target,
        config,
        categorical_indices=tuple(contract.categorical_indices),
        n_jobs=n_jobs,
        x_train=model_matrix(train, contract),
        y_train=train[target].to_numpy(dtype=np.float64),
        x_val=x_val,
        y_val=y_val,
        progress=progress,
    )
    if not btyd:
        return champion, candidates, champion.contract(contract)
    progress("fitting candidate blend (Pareto/NBD with the best LightGBM)")
    if fits is not None:
        blend, metrics, se = finish_blend(
            target,
            champion.estimator.booster_,
            contract,
            fits,
            y_val=y_val,
            seed=config.seed,
            one_se=ts.plan.grouped,
            raw_val=champion.validation_raw,
        )
        cand = Candidate(
            "blend",
            champion.num_leaves,
            champion.estimator,
            metrics,
            contract_update={"blend": blend, "calibration": None},
            validation_raw=champion.validation_raw,
        )
        candidates.append(cand)
        metric = SELECTION_METRIC[target]
        progress(
            f"blend: weight {blend.weight} on LightGBM; validation {metric} "
            f"{metrics[metric]:.4f} vs {champion.validation.get(metric, np.nan):.4f}"
        )
        # On a customer-grouped plan the validation rows flatter the booster (see
        # training.blend): the blend wins unless a LightGBM beats it by more than one
        # bootstrap standard error (se is 0 on a time split: the plain comparison).
        if metrics[metric] > champion.validation.get(metric, np.nan) - se:
            champion = cand
    return champion, candidates, champion.contract(contract)


def _test_with_importance(
    target: Target,
    ts: TrainingSet,
    booster: lgb.Booster,
    contract: ModelContract,
    *,
    config: TrainingConfig,
    oracle: OracleScorer | None,
    progress: Progress,
    segmenter: Segmenter | None,
    btyd: bool = True,
) -> tuple[Comparison, pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The model's test scores next to the baselines', its feature importance, and the
    test rows' model matrix with the booster's raw outputs on it (the other candidates
    of the same booster are scored from them)."""
    test = ts.slice("test")
    # SHAP contributions (single-threaded LightGBM C code, which releases the GIL)
    # overlap with test scoring and the baselines, which mostly run on one core.
    shap = ShapJob(booster, test, contract)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-shap") as pool:
        background = pool.submit(shap.work, shap.copy)
        # The registered model scores exactly like this (score_frame), in batch and online.
        x_test = model_matrix(test, contract)
        raw_test = predict_raw(booster, x_test)
        model_scores = calibrate(raw_test, contract, x_test)
        comparison = compare_with_baselines(
            target,
            ts,
            model_scores,
            config=config,
            oracle=oracle,
            progress=progress,
            segmenter=segmenter,
            btyd=btyd,
        )
        shap.work(booster)  # take a share of what is left
        background.result()
    return comparison, importance_table(booster, shap.mean_abs(), contract), (x_test, raw_test)


def _population(
    shared: AlsoAtScoringDate | None,
    customers: pd.DataFrame,
    events: pd.DataFrame,
    feature_builder: FeatureBuilder,
    spec: Any,
) -> pd.DataFrame:
    """The scoring date's features: from the training build when it made them."""
    built = shared.take() if shared is not None else None
    if built is not None:
        return built
    return scoring_population(customers, events, feature_builder=feature_builder, spec=spec)


def train_predictor(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    target: Target,
    config: TrainingConfig,
    feature_builder: FeatureBuilder,
    spec: Any = None,
    spec_hash: str = "",
    facts_fingerprint: str = "",
    cutoffs: Sequence[object] | None = None,
    oracle: OracleScorer | None = None,
    progress: Progress = _noop,
    n_jobs: int = 2,
    segmenter: Segmenter | None = None,
    btyd_candidates: bool = True,
) -> TrainingResult:
    """Train the ``target`` predictor and score it against baselines (and the oracle).

    Args:
        customers: Canonical customers.
        events: Canonical events.
        target: ``churn`` or ``value``.
        config: Label and estimator settings.
        feature_builder: ``build_features``-compatible function.
        spec: Feature spec passed to ``feature_builder``.
        spec_hash: Hash of ``spec`` (lineage).
        facts_fingerprint: Fingerprint of the fact store (lineage).
        cutoffs: Explicit cutoffs (see :func:`training.labels.plan_cutoffs`).
        oracle: Scores from the latent truth for a cutoff (synthetic data only).
        progress: Called with a short message at each stage.
        n_jobs: Threads while fitting.
        segmenter: Segment columns of the test rows (default: RFM and lifecycle).
        btyd_candidates: Fit the Pareto/NBD ``blend`` candidate and the Pareto/NBD
            baseline. Off only to measure what they cost (``benchmarks/quality.py
            --phase speed`` times training with and without them in one process).

    Raises:
        TrainingError: The data cannot be labelled or trained on (message says why).
    """
    lap = _Laps()
    plan = _plan(events, config, config.horizon_days, cutoffs)
    progress(
        f"cutoffs: train {[c.date().isoformat() for c in plan.train]}, validation "
        f"{plan.validation.date()}, test {plan.test.date()}, horizon {plan.horizon_days} days"
    )
    # The blend refits Pareto/NBD at the scoring date: build its features in the same
    # pass as the cutoffs' (one preparation of the events instead of two).
    shared = AlsoAtScoringDate(feature_builder, scoring_date(events)) if btyd_candidates else None
    ts = build_training_set(
        customers,
        events,
        plan=plan,
        feature_builder=feature_builder if shared is None else shared,
        spec=spec,
    )
    lap("features_and_labels")
    rows = {part: len(ts.slice(part)) for part in ("train", "validation", "test")}
    progress(f"rows: {rows}; {len(ts.feature_names)} features")
    warnings = data_warnings(plan, rows)
    for message in warnings:
        progress(f"warning: {message}")
    contract = _contract_for(target, ts, spec_hash=spec_hash, facts_fingerprint=facts_fingerprint)
    champion, candidates, contract = _fit_champion(
        target,
        ts,
        contract,
        config=config,
        n_jobs=n_jobs,
        progress=progress,
        population=lambda: _population(shared, customers, events, feature_builder, spec),
        events=events,
        btyd=btyd_candidates,
    )
    estimator = champion.estimator
    lap("model")
    comparison, importance, champion_raw = _test_with_importance(
        target,
        ts,
        estimator.booster_,
        contract,
        config=config,
        oracle=oracle,
        progress=progress,
        segmenter=segmenter,
        btyd=btyd_candidates,
    )
    lap("baselines_and_evaluation")
    test = ts.slice("test")
    metrics = comparison.metrics["model"]
    score_candidates(candidates, champion, test, contract, metrics, champion_raw=champion_raw)
    del champion_raw
    for message in baseline_losses(comparison.lift):
        progress(f"warning: {message}")
        warnings.append(message)
    return TrainingResult(
        target=target,
        contract=contract,
        estimator=estimator,
        plan=plan,
        test=comparison.test,
        scores=comparison.scores,
        metrics=comparison.metrics,
        lift=comparison.lift,
        segment_metrics=comparison.segment_metrics,
        importance=importance,
        curves=comparison.curves,
        rows=rows,
        dropped_features=ts.dropped_features,
        seconds=lap.seconds,
        input_example=pd.DataFrame(
            model_matrix(test.head(5), contract), columns=contract.feature_names
        ),
        warnings=warnings,
        candidates=candidates,
        champion=champion.name,
    )


@dataclass
class Comparison:
    """A model's test scores next to the baselines' (and the oracle's) on one split.

    Attributes:
        target: ``churn`` or ``value``.
        plan: The cutoffs.
        test: Test rows: keys, labels, history summary and segments.
        scores: Scores on the test rows per scorer (``model`` first).
        metrics: Metric values per scorer.
        lift: Per metric, the best baseline and the model's improvement over it.
        segment_metrics: Long table of metrics per RFM segment / lifecycle stage.
        curves: ``calibration`` (churn) and ``gain`` tables of the model.
    """

    target: Target
    plan: CutoffPlan
    test: pd.DataFrame
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]
    lift: dict[str, tuple[str, float]]
    segment_metrics: pd.DataFrame
    curves: dict[str, pd.DataFrame]

    def metrics_table(self) -> pd.DataFrame:
        """Scorers as rows, metrics as columns."""
        return pd.DataFrame(self.metrics).T


def compare_with_baselines(
    target: Target,
    ts: TrainingSet,
    model_scores: np.ndarray,
    *,
    config: TrainingConfig,
    oracle: OracleScorer | None = None,
    progress: Progress = _noop,
    segmenter: Segmenter | None = None,
    btyd: bool = True,
) -> Comparison:
    """Score the test rows of ``ts`` with every baseline (fitted on the training and
    validation rows) and the oracle, and compute each scorer's metrics next to
    ``model_scores``. Without ``btyd`` the Pareto/NBD baseline is left out (to measure
    its cost; BG/NBD, older, stays).

    Raises:
        TrainingError: The oracle lacks a test customer.
    """
    plan = ts.plan
    test = ts.slice("test")
    scores: dict[str, np.ndarray] = {"model": np.asarray(model_scores, dtype=np.float64)}
    y_test = test[target].to_numpy(dtype=np.float64)
    numeric = [n for n in ts.feature_names if n not in ts.categorical_levels]
    fit_rows = ts.slice("fit")
    for baseline in make_baselines(
        target, numeric_features=numeric, horizon_days=plan.horizon_days, seed=config.seed
    ):
        if not btyd and baseline.name == "paretonbd":
            continue
        progress(f"baseline {baseline.name}")
        scores[baseline.name] = baseline.fit(fit_rows).predict(test)
    del fit_rows
    if oracle is not None:
        oracle_scores = oracle(plan.test)
        aligned = oracle_scores.reindex(pd.Index(test["customer_id"].astype(str)))
        if aligned.isna().any():
            raise TrainingError(
                f"Expected an oracle score for every test customer. Got none for "
                f"{int(aligned.isna().sum())} of {len(aligned)}."
            )
        scores["oracle"] = aligned.to_numpy(dtype=np.float64)
    metrics = {name: metrics_for(target, y_test, s) for name, s in scores.items()}
    baseline_metrics = {n: m for n, m in metrics.items() if n not in ("model", "oracle")}
    segments = (segmenter or simple_segments)(test)
    curves = {"gain": gain_table(y_test, scores["model"])}
    if target == "churn":
        curves["calibration"] = calibration_table(y_test, scores["model"])
    keep = [
        *_KEY,
        "churn",
        "value",
        "days_since_last_purchase",
        "days_since_first_purchase",
        "n_purchase_days",
        "purchase_amount",
        "refund_amount",
    ]
    test_out = pd.concat(
        [test[keep].reset_index(drop=True), segments.reset_index(drop=True)], axis=1
    )
    return Comparison(
        target=target,
        plan=plan,
        test=test_out,
        scores=scores,
        metrics=metrics,
        lift=lift_over(metrics["model"], baseline_metrics),
        segment_metrics=segment_metrics(target, y_test, scores, segments),
        curves=curves,
    )


def evaluate_model(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    model: ScoringModel,
    config: TrainingConfig,
    feature_builder: FeatureBuilder,
    spec: Any = None,
    cutoffs: Sequence[object] | None = None,
    oracle: OracleScorer | None = None,
    progress: Progress = _noop,
    segmenter: Segmenter | None = None,
) -> Comparison:
    """Score a trained model on the latest labelled cutoff of these facts, next to
    baselines fitted on the earlier cutoffs (with the model's own horizon and target).

    Raises:
        TrainingError: The data cannot be labelled (message says why).
    """
    contract = model.contract
    plan = _plan(events, config, contract.horizon_days, cutoffs)
    progress(f"test cutoff {plan.test.date()}, horizon {plan.horizon_days} days")
    ts = build_training_set(
        customers, events, plan=plan, feature_builder=feature_builder, spec=spec
    )
    return compare_with_baselines(
        contract.target,
        ts,
        model.score(ts.slice("test")),
        config=config,
        oracle=oracle,
        progress=progress,
        segmenter=segmenter,
    )
