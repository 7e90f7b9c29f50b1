"""Metrics of churn and value scores, overall and per segment.

Churn (scores are P(churn)): ``auc``, ``pr_auc``, ``brier``, ``log_loss``,
``top_decile_lift`` (churn rate among the 10% highest scores over the base rate) and a
calibration curve. Value (scores are expected net spend): ``spearman``, ``mae``,
``rmse``, ``normalized_gini``, ``top_decile_capture`` (share of the actual total
spent by the 10% highest predictions) and ``total_ratio`` (predicted total over
actual total). Metrics that a slice cannot define (one class only, constant input)
are NaN rather than an error.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from tags.catalogue import Catalogue
from tags.engine import evaluate_tags

__all__ = [
    "CHURN_METRICS",
    "HIGHER_IS_BETTER",
    "VALUE_METRICS",
    "calibration_table",
    "churn_metrics",
    "gain_table",
    "lift_over",
    "metrics_for",
    "normalized_gini",
    "segment_metrics",
    "simple_segments",
    "tag_segments",
    "value_metrics",
]

CHURN_METRICS = ("auc", "pr_auc", "brier", "log_loss", "top_decile_lift")
VALUE_METRICS = (
    "spearman",
    "mae",
    "rmse",
    "normalized_gini",
    "top_decile_capture",
    "total_ratio",
)
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "pr_auc": True,
    "brier": False,
    "log_loss": False,
    "top_decile_lift": True,
    "spearman": True,
    "mae": False,
    "rmse": False,
    "normalized_gini": True,
    "top_decile_capture": True,
    "total_ratio": True,
}


def _top_decile(score: np.ndarray) -> np.ndarray:
    n = max(1, int(np.ceil(0.1 * len(score))))
    # Stable order so ties are resolved the same way on every run.
    return np.argsort(-score, kind="stable")[:n]


def _auc_and_average_precision(
    y: np.ndarray, order: np.ndarray, p: np.ndarray
) -> tuple[float, float]:
    """ROC AUC and average precision of scores ``p`` (sorted descending by ``order``)
    for outcomes ``y`` with both classes present.

    What ``sklearn.metrics.roc_auc_score`` and ``average_precision_score`` compute, from
    one sort: the ROC and precision-recall curves step at each distinct score (tied
    scores form one step), the AUC is the trapezoidal area under the ROC and the
    average precision is sum over steps of (recall gained) x precision.
    """
    ps, ys = p[order], y[order]
    ends = np.append(np.flatnonzero(np.diff(ps)), len(ps) - 1)  # last row of each tie
    tps = np.cumsum(ys)[ends]
    fps = (ends + 1) - tps
    tpr = np.append(0.0, tps / tps[-1])
    fpr = np.append(0.0, fps / fps[-1])
    auc = float(np.trapezoid(tpr, fpr))
    average_precision = float(np.sum(np.diff(tpr) * (tps / (tps + fps))))
    return auc, average_precision


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Churn metrics of probabilities ``p`` against outcomes ``y`` (1 = churned)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    nan = float("nan")
    if len(y) == 0:
        return dict.fromkeys(CHURN_METRICS, nan)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    both = 0 < y.sum() < len(y)
    base = y.mean()
    # Stable order so ties are resolved the same way on every run.
    order = np.argsort(-p, kind="stable")
    auc, average_precision = _auc_and_average_precision(y, order, p) if both else (nan, nan)
    top = order[: max(1, int(np.ceil(0.1 * len(p))))]
    return {
        "auc": auc,
        "pr_auc": average_precision,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "top_decile_lift": float(y[top].mean() / base) if base > 0 else nan,
    }


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of ``predicted`` ranking ``actual``, over the Gini of the perfect ranking.

    1 is a perfect ordering, 0 random; ties in ``predicted`` are broken against the
    model (by ascending actual) so a constant prediction cannot score well.
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)

    def gini(order_by: np.ndarray) -> float:
        order = np.lexsort((actual, -order_by))
        cum = np.cumsum(actual[order])
        total = cum[-1]
        if total == 0:
            return float("nan")
        n = len(actual)
        return float(cum.sum() / total - (n + 1) / 2.0) / n

    if len(actual) < 2:
        return float("nan")
    perfect = gini(actual)
    if not np.isfinite(perfect) or perfect == 0:
        return float("nan")
    return gini(predicted) / perfect


def value_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Value metrics of predicted spend ``pred`` against actual net spend ``y``."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    nan = float("nan")
    if len(y) == 0:
        return dict.fromkeys(VALUE_METRICS, nan)
    total = y.sum()
    varied = np.ptp(y) > 0 and np.ptp(pred) > 0
    return {
        "spearman": float(stats.spearmanr(y, pred).statistic) if varied else nan,
        "mae": float(np.mean(np.abs(pred - y))),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "normalized_gini": normalized_gini(y, pred),
        "top_decile_capture": float(y[_top_decile(pred)].sum() / total) if total > 0 else nan,
        "total_ratio": float(pred.sum() / total) if total != 0 else nan,
    }


def metrics_for(
    target: Literal["churn", "value"], y: np.ndarray, score: np.ndarray
) -> dict[str, float]:
    """:func:`churn_metrics` or :func:`value_metrics` by target."""
    return churn_metrics(y, score) if target == "churn" else value_metrics(y, score)


def lift_over(
    model: dict[str, float], baselines: dict[str, dict[str, float]]
) -> dict[str, tuple[str, float]]:
    """For each metric, the best baseline's name and the model's improvement over it.

    Improvement is signed so that positive is better: ``model - best`` where higher is
    better, ``best - model`` where lower is better.
    """
    out: dict[str, tuple[str, float]] = {}
    for metric, value in model.items():
        higher = HIGHER_IS_BETTER.get(metric, True)
        if metric == "total_ratio":
            # Closest to 1 is best.
            cands = {n: abs(m[metric] - 1) for n, m in baselines.items() if np.isfinite(m[metric])}
            if cands:
                best = min(cands, key=lambda n: cands[n])
                out[metric] = (best, cands[best] - abs(value - 1))
            continue
        cands = {n: m[metric] for n, m in baselines.items() if np.isfinite(m.get(metric, np.nan))}
        if not cands:
            continue
        best = (max if higher else min)(cands, key=lambda n: cands[n])
        out[metric] = (best, value - cands[best] if higher else cands[best] - value)
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn per quantile bin of ``p``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    df = pd.DataFrame({"bin": bins, "predicted": p, "observed": y})
    out = df.groupby("bin").agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"), n=("observed", "size")
    )
    return out.reset_index(drop=True)


def gain_table(y: np.ndarray, score: np.ndarray, n_bins: int = 20) -> pd.DataFrame:
    """Cumulative gain: share of the positive total captured by the top x% of scores."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    cum = np.cumsum(y[order])
    total = cum[-1] if len(cum) and cum[-1] != 0 else np.nan
    shares = np.linspace(0, 1, n_bins + 1)[1:]
    idx = np.maximum((shares * len(y)).astype(int) - 1, 0)
    gain = cum[idx] / total if len(y) else np.full(len(shares), np.nan)
    return pd.DataFrame({"population_share": shares, "gain": gain, "lift": gain / shares})


_RFM_NAMES = {
    (True, True, True): "important_value",
    (True, False, True): "important_development",
    (False, True, True): "important_retention",
    (False, False, True): "important_win_back",
    (True, True, False): "general_value",
    (True, False, False): "general_development",
    (False, True, False): "general_retention",
    (False, False, False): "general_win_back",
}


def simple_segments(frame: pd.DataFrame) -> pd.DataFrame:
    """RFM segment and lifecycle stage per row, from the purchase-history summary.

    RFM: R/F/M high when at least as good as the median of the rows' cutoff (the
    eight classic segments). Lifecycle: ``new`` (first purchase within 30 days),
    ``active`` (last purchase within 1.5 of the customer's mean gap, or 30 days for
    one-time buyers), ``dormant`` (within 3 gaps, or 90 days), else ``lapsed``.
    """
    rec = frame["days_since_last_purchase"].to_numpy(dtype=np.float64)
    freq = frame["n_purchase_days"].to_numpy(dtype=np.float64)
    mon = (frame["purchase_amount"] - frame["refund_amount"]).to_numpy(dtype=np.float64)
    first = frame["days_since_first_purchase"].to_numpy(dtype=np.float64)
    # Codes, not values: a tz-aware column would become an array of Timestamp objects.
    cut, _ = pd.factorize(frame["cutoff"])
    r_hi = np.zeros(len(frame), bool)
    f_hi = np.zeros(len(frame), bool)
    m_hi = np.zeros(len(frame), bool)
    for c in np.unique(cut):
        rows = cut == c
        r_hi[rows] = rec[rows] <= np.median(rec[rows])
        f_hi[rows] = freq[rows] >= np.median(freq[rows])
        m_hi[rows] = mon[rows] >= np.median(mon[rows])
    names = np.array([_RFM_NAMES[(bool(i & 4), bool(i & 2), bool(i & 1))] for i in range(8)])
    rfm = names[r_hi * 4 + f_hi * 2 + m_hi * 1]
    gap = np.where(freq > 1, (first - rec) / np.maximum(freq - 1, 1), np.nan)
    active_limit = np.where(np.isfinite(gap), 1.5 * gap, 30.0)
    dormant_limit = np.where(np.isfinite(gap), 3.0 * gap, 90.0)
    stage = np.where(
        first <= 30,
        "new",
        np.where(
            rec <= active_limit, "active", np.where(rec <= dormant_limit, "dormant", "lapsed")
        ),
    )
    return pd.DataFrame({"rfm_segment": rfm, "lifecycle_stage": stage}, index=frame.index)


SEGMENT_TAGS = ("rfm_segment", "lifecycle_stage")


def tag_segments(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    catalogue: Catalogue,
    *,
    tag_ids: tuple[str, ...] = SEGMENT_TAGS,
) -> pd.DataFrame:
    """RFM segment and lifecycle stage per row from the catalogue's own rule tags.

    ``frame`` holds one cutoff's rows (``customer_id``, ``cutoff`` and the features);
    the tags are evaluated as of that cutoff with the rule engine, so the segments are
    exactly what tagging would assign. Customers outside a tag's scope get ``"none"``.
    Tags the catalogue lacks fall back to :func:`simple_segments`.
    """
    cutoffs = frame["cutoff"].unique()
    if len(cutoffs) != 1:
        raise ValueError(f"Expected rows of one cutoff. Got {len(cutoffs)} cutoffs.")
    known = [t for t in tag_ids if t in catalogue]
    out = simple_segments(frame)
    if not known:
        return out
    features = frame.drop(columns=["cutoff"])
    long = evaluate_tags(features, events, catalogue, as_of=pd.Timestamp(cutoffs[0]), tag_ids=known)
    ids = frame["customer_id"].astype(str)
    for tag in known:
        values = long.loc[long["tag_id"] == tag].drop_duplicates("customer_id")
        mapping = pd.Series(
            values["value"].astype(str).to_numpy(),
            index=values["customer_id"].astype(str).to_numpy(),
        )
        out[tag] = ids.map(mapping).fillna("none").to_numpy()
    return out


def segment_metrics(
    target: Literal["churn", "value"],
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    segments: pd.DataFrame,
    *,
    min_rows: int = 30,
) -> pd.DataFrame:
    """Metrics of every scorer per value of every segment column.

    Returns:
        Long table: ``segmentation``, ``segment``, ``n``, ``scorer``, ``metric``,
        ``value``. Segments with fewer than ``min_rows`` rows are skipped.
    """
    rows: list[dict[str, object]] = []
    y = np.asarray(y, dtype=np.float64)
    for column in segments.columns:
        labels = segments[column].to_numpy()
        for seg in sorted(pd.unique(labels)):
            mask = labels == seg
            n = int(mask.sum())
            if n < min_rows:
                continue
            for scorer, score in scores.items():
                for metric, value in metrics_for(target, y[mask], score[mask]).items():
                    rows.append(
                        {
                            "segmentation": column,
                            "segment": seg,
                            "n": n,
                            "scorer": scorer,
                            "metric": metric,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows, columns=["segmentation", "segment", "n", "scorer", "metric", "value"])
