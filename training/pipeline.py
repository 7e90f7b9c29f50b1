"""Training end to end, without I/O: facts -> training set -> model, baselines, oracle -> metrics.

:func:`train_predictor` is what ``tagsmith train``, the MLproject entry point, the
notebook and the quality benchmark all call; :mod:`training.tracking` logs its result.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.contract import ModelContract, categorical_levels_of, model_matrix, score_frame
from scoring.loading import ScoringModel
from training.baselines import make_baselines
from training.candidates import Candidate, fit_candidates, score_candidates
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
from training.labels import CutoffPlan, label_table, plan_training
from training.split import (
    baseline_losses,
    data_warnings,
    group_slice,
    grouped_rows,
    unused_features,
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
# build_features(customers, events, *, as_of, spec) from features.build, or a stand-in.
FeatureBuilder = Callable[..., pd.DataFrame]
# cutoff -> scores indexed by customer_id (from the generator's latent truth).
OracleScorer = Callable[[pd.Timestamp], pd.Series]
Progress = Callable[[str], None]
# Test rows (keys, labels, history summary, features) -> segment columns, same index.
Segmenter = Callable[[pd.DataFrame], pd.DataFrame]

_KEY = ["customer_id", "cutoff"]
_MAX_LEVELS = 200
_SHAP_ROWS = 20_000
_SHAP_CHUNKS = 8


def _noop(_: str) -> None:
    return None


@dataclass
class TrainingSet:
    """Labelled rows of every cutoff with their features.

    Attributes:
        frame: One row per (customer in the population, cutoff), ordered by cutoff:
            the label table's columns (history summary, ``churn``, ``value``) and the
            features.
        feature_names: Model inputs, in matrix order.
        categorical_levels: Levels of each categorical input.
        dropped_features: Feature columns not used, with the reason.
        plan: The train/validation/test cutoffs.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    categorical_levels: dict[str, list[str]]
    dropped_features: dict[str, str]
    plan: CutoffPlan

    def slice(self, which: Literal["train", "validation", "test", "fit"]) -> pd.DataFrame:
        """Rows of one part of the split (``fit``: training and validation rows).

        Rows are ordered by cutoff, so each part is a contiguous block: a view of
        ``frame``, not a copy (at a million customers a copy costs seconds and GiBs).
        """
        plan = self.plan
        if plan.grouped:
            return group_slice(self.frame, which)
        first, last = {
            "train": (plan.train[0], plan.train[-1]),
            "validation": (plan.validation, plan.validation),
            "test": (plan.test, plan.test),
            "fit": (plan.train[0], plan.validation),
        }[which]
        cut = self.frame["cutoff"]
        if not cut.is_monotonic_increasing:
            return self.frame.loc[(cut >= first) & (cut <= last)]
        lo = int(cut.searchsorted(first, side="left"))
        hi = int(cut.searchsorted(last, side="right"))
        return self.frame.iloc[lo:hi]


def _utc_series(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def select_features(
    features: pd.DataFrame, *, exclude: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Model inputs among ``features``' columns, and why the others are dropped.

    Numbers and booleans are inputs; strings and categoricals with at most 200 levels
    are categorical inputs; identifiers, timestamps and wider text are dropped.
    """
    names: list[str] = []
    dropped: dict[str, str] = {}
    for name in features.columns:
        if name in ("customer_id", "as_of", *exclude):
            continue
        col = features[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            names.append(name)
        elif pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
            dropped[name] = "timestamp"
        elif isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
            n_levels = col.nunique(dropna=True)
            if n_levels > _MAX_LEVELS:
                dropped[name] = f"{n_levels} levels (> {_MAX_LEVELS})"
            else:
                names.append(name)
        else:
            dropped[name] = f"dtype {col.dtype}"
    return names, dropped


def build_training_set(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    plan: CutoffPlan,
    feature_builder: FeatureBuilder,
    spec: Any = None,
) -> TrainingSet:
    """Labels at every cutoff of ``plan`` joined with point-in-time features.

    The labels are computed on a second thread while the features are built.

    Raises:
        TrainingError: The feature frame lacks keys, or a cutoff has no population.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-labels") as pool:
        pending = pool.submit(label_table, events, plan.all, horizon_days=plan.horizon_days)
        feats = feature_builder(customers, events, as_of=plan.all, spec=spec)
        labels = pending.result()
    if "customer_id" not in feats.columns or "as_of" not in feats.columns:
        raise TrainingError(
            "Expected the feature frame of several cutoffs to have 'customer_id' and 'as_of' "
            f"columns. Got {list(feats.columns)[:6]}..."
        )
    clash = sorted(set(feats.columns) & (set(labels.columns) - set(_KEY)))
    if clash:
        raise TrainingError(
            f"Expected feature names distinct from the label table's columns. Got {clash}."
        )
    feats = feats.rename(columns={"as_of": "cutoff"})
    feats["cutoff"] = _utc_series(feats["cutoff"])
    feats["customer_id"] = feats["customer_id"].astype("string")
    frame = labels.merge(feats, on=_KEY, how="inner", validate="one_to_one")
    if not frame["cutoff"].is_monotonic_increasing:
        frame = frame.sort_values("cutoff", kind="stable", ignore_index=True)
    counts = frame["cutoff"].value_counts()
    empty = [c.date().isoformat() for c in plan.all if counts.get(c, 0) == 0]
    if empty:
        raise TrainingError(
            f"Expected customers with a purchase before every cutoff. Got none at {empty}."
        )
    names, dropped = select_features(feats.drop(columns=_KEY))
    if plan.grouped:
        frame = grouped_rows(frame, plan)
    unused = unused_features(frame, names, events)
    names = [n for n in names if n not in unused]
    dropped = {**dropped, **unused}
    ts = TrainingSet(
        frame=frame,
        feature_names=names,
        categorical_levels={},
        dropped_features=dropped,
        plan=plan,
    )
    ts.categorical_levels = categorical_levels_of(ts.slice("fit"), names)
    return ts


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

    Raises:
        TrainingError: The data cannot be labelled or trained on (message says why).
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 3)
        clock = now

    first, last = _first_purchase_and_last_event(events)
    plan = plan_training(
        first,
        last,
        horizon_days=config.horizon_days,
        n_cutoffs=config.n_cutoffs,
        step_months=config.cutoff_step_months,
        cutoffs=cutoffs,
        min_history_days=config.min_history_days,
    )
    progress(
        f"cutoffs: train {[c.date().isoformat() for c in plan.train]}, validation "
        f"{plan.validation.date()}, test {plan.test.date()}, horizon {plan.horizon_days} days"
    )
    ts = build_training_set(
        customers, events, plan=plan, feature_builder=feature_builder, spec=spec
    )
    lap("features_and_labels")
    train, val, test = ts.slice("train"), ts.slice("validation"), ts.slice("test")
    rows = {"train": len(train), "validation": len(val), "test": len(test)}
    progress(f"rows: {rows}; {len(ts.feature_names)} features")
    warnings = data_warnings(plan, rows)
    for message in warnings:
        progress(f"warning: {message}")

    contract = ModelContract(
        target=target,
        horizon_days=plan.horizon_days,
        feature_names=ts.feature_names,
        categorical_levels=ts.categorical_levels,
        spec_hash=spec_hash,
        facts_fingerprint=facts_fingerprint,
        train_cutoffs=[c.date() for c in plan.train],
        validation_cutoffs=[plan.validation.date()],
    )
    cats = tuple(contract.categorical_indices)
    x_train, x_val = model_matrix(train, contract), model_matrix(val, contract)
    champion, candidates = fit_candidates(
        target,
        config,
        categorical_indices=cats,
        n_jobs=n_jobs,
        x_train=x_train,
        y_train=train[target].to_numpy(dtype=np.float64),
        x_val=x_val,
        y_val=val[target].to_numpy(dtype=np.float64),
        progress=progress,
    )
    estimator = champion.estimator
    del x_train
    if isinstance(estimator, ChurnClassifier):
        contract = contract.model_copy(update={"calibration": estimator.calibration_})
    lap("model")

    # SHAP contributions (single-threaded LightGBM C code, which releases the GIL)
    # overlap with test scoring and the baselines, which mostly run on one core.
    shap = _ShapJob(estimator.booster_, test, contract)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagsmith-shap") as pool:
        background = pool.submit(shap.work, shap.copy)
        # The registered model scores exactly like this, in batch and online.
        model_scores = score_frame(estimator.booster_, test, contract)
        comparison = compare_with_baselines(
            target,
            ts,
            model_scores,
            config=config,
            oracle=oracle,
            progress=progress,
            segmenter=segmenter,
        )
        shap.work(estimator.booster_)  # take a share of what is left
        background.result()
    importance = _importance(estimator.booster_, shap.mean_abs(), contract)
    lap("baselines_and_evaluation")
    score_candidates(candidates, champion, test, contract, comparison.metrics["model"])
    for message in baseline_losses(comparison.lift):
        progress(f"warning: {message}")
        warnings.append(message)
    example = pd.DataFrame(model_matrix(test.head(5), contract), columns=contract.feature_names)
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
        seconds=seconds,
        input_example=example,
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
) -> Comparison:
    """Score the test rows of ``ts`` with every baseline (fitted on the training and
    validation rows) and the oracle, and compute each scorer's metrics next to
    ``model_scores``.

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
    first, last = _first_purchase_and_last_event(events)
    plan = plan_training(
        first,
        last,
        horizon_days=contract.horizon_days,
        n_cutoffs=config.n_cutoffs,
        step_months=config.cutoff_step_months,
        cutoffs=cutoffs,
        min_history_days=config.min_history_days,
    )
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


class _ShapJob:
    """Mean absolute SHAP contributions over a sample of test rows, in chunks that
    two threads can share (each with its own booster: concurrent predictions on one
    LightGBM booster are not safe)."""

    def __init__(self, booster: lgb.Booster, test: pd.DataFrame, contract: ModelContract) -> None:
        sample = test.sample(min(len(test), _SHAP_ROWS), random_state=0) if len(test) else test
        self.chunks = np.array_split(model_matrix(sample, contract), _SHAP_CHUNKS)
        self.parts: list[np.ndarray | None] = [None] * len(self.chunks)
        self._next = itertools.count()
        self.n_features = len(contract.feature_names)
        self.copy = lgb.Booster(model_str=booster.model_to_string())

    def work(self, booster: lgb.Booster) -> None:
        """Compute chunks not yet taken by the other thread, one LightGBM thread."""
        while (i := next(self._next)) < len(self.chunks):
            chunk = self.chunks[i]
            if len(chunk) == 0:
                continue
            contrib = booster.predict(chunk, pred_contrib=True, num_threads=1)
            self.parts[i] = np.abs(np.asarray(contrib)).sum(axis=0)

    def mean_abs(self) -> np.ndarray:
        """Mean |SHAP| per feature (the bias column dropped); zeros without rows."""
        n = sum(len(c) for c in self.chunks)
        if n == 0:
            return np.zeros(self.n_features)
        total = np.sum([p for p in self.parts if p is not None], axis=0)
        return np.asarray(total[:-1] / n)


def _importance(booster: lgb.Booster, shap: np.ndarray, contract: ModelContract) -> pd.DataFrame:
    gain = booster.feature_importance(importance_type="gain")
    out = pd.DataFrame({"feature": contract.feature_names, "gain": gain, "shap": shap})
    return out.sort_values("gain", ascending=False, ignore_index=True)
