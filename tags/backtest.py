"""Backtesting a tag: what it would have said on past dates, and how well that predicted.

For each date ``d`` the tag is evaluated with only the data available at ``d`` (features
built at ``as_of=d`` from events before ``d``) and compared with an outcome observed in
``[d, d + horizon)`` (e.g. ``no_purchase_90d``: no purchase in the 90 days after ``d``).
Reported per date: population, tag size, outcome base rate, precision, recall and lift
(precision / base rate). Dates whose outcome window is not fully observed are reported
as incomplete, without metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from tags.catalogue import Catalogue
from tags.engine import evaluate_tags
from tags.errors import BacktestError
from tags.rules import suggest, to_ns

__all__ = [
    "BacktestPoint",
    "BacktestResult",
    "Outcome",
    "backtest",
    "backtest_dates",
    "outcome_labels",
    "parse_every",
    "parse_outcome",
]

_OUTCOME = re.compile(r"^(?P<no>no_)?(?P<event>[a-z][a-z0-9_]*?)_(?P<days>\d+)d$")
_DAY_NS = 86_400 * 10**9

FeatureBuilder = Callable[[pd.DataFrame, pd.DataFrame, pd.Timestamp], pd.DataFrame]


@dataclass(frozen=True)
class Outcome:
    """A named outcome: (no) event of a type within ``days`` after the date.

    Attributes:
        name: As given, e.g. ``no_purchase_90d``.
        event_type: The event type observed.
        days: The horizon.
        absent: True for ``no_...`` outcomes (the event does not happen).
    """

    name: str
    event_type: str
    days: int
    absent: bool

    def describe(self) -> str:
        """Plain-English meaning."""
        verb = "no" if self.absent else "at least one"
        return f"{verb} {self.event_type} event in the {self.days} days after the date"


def parse_outcome(name: str, event_types: Iterable[str]) -> Outcome:
    """Parse ``[no_]EVENT_Nd`` (e.g. ``no_purchase_90d``, ``complaint_30d``).

    Raises:
        BacktestError: The name does not follow the pattern or names an unknown event.
    """
    known = list(event_types)
    match = _OUTCOME.match(name)
    examples = "no_purchase_90d, purchase_30d, complaint_60d, refund_90d"
    if not match:
        raise BacktestError(
            f"Expected an outcome like [no_]EVENT_Nd ({examples}). Got {name!r} instead."
        )
    event = match.group("event")
    days = int(match.group("days"))
    if event not in known:
        raise BacktestError(
            f"Expected an outcome over one of the event types {known}. Got {event!r} in "
            f"{name!r}.{suggest(event, known)}"
        )
    if not 1 <= days <= 3650:
        raise BacktestError(f"Expected an outcome horizon of 1 to 3650 days. Got {days}.")
    return Outcome(name=name, event_type=event, days=days, absent=bool(match.group("no")))


def parse_every(text: str) -> int:
    """Days of a step like ``30d`` or ``2w``.

    Raises:
        BacktestError: Not ``Nd`` or ``Nw`` with N >= 1.
    """
    match = re.fullmatch(r"(\d+)\s*([dw])", text.strip().lower())
    if not match or int(match.group(1)) < 1:
        raise BacktestError(f"Expected a step like 30d or 2w. Got {text!r} instead.")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def backtest_dates(
    start: pd.Timestamp | str, end: pd.Timestamp | str, every_days: int
) -> list[pd.Timestamp]:
    """``start, start + every, ...`` up to and including ``end``.

    Raises:
        BacktestError: ``end`` is before ``start`` or the step is not positive.
    """
    first, last = _utc(start), _utc(end)
    if last < first:
        raise BacktestError(
            f"Expected --to on or after --from. Got {first.date()} > {last.date()}."
        )
    if every_days < 1:
        raise BacktestError(f"Expected a step of at least 1 day. Got {every_days}.")
    dates = []
    current = first
    while current <= last:
        dates.append(current)
        current = current + pd.Timedelta(days=every_days)
    return dates


def outcome_labels(
    events: pd.DataFrame, customer_ids: pd.Series, *, as_of: pd.Timestamp, outcome: Outcome
) -> np.ndarray:
    """Whether each customer's outcome happened in ``[as_of, as_of + days)``."""
    start = to_ns(as_of)
    end = start + outcome.days * _DAY_NS
    ts = to_ns(events["occurred_at"])
    window = (ts >= start) & (ts < end)
    window &= (events["event_type"] == outcome.event_type).to_numpy(dtype=bool, na_value=False)
    happened = pd.Index(pd.unique(events["customer_id"][window]))
    hit = np.asarray(customer_ids.isin(happened), dtype=bool)
    return ~hit if outcome.absent else hit


@dataclass(frozen=True)
class BacktestPoint:
    """The tag at one past date against the outcome after it."""

    as_of: pd.Timestamp
    population: int
    tagged: int
    positives: int
    true_positives: int
    complete: bool
    base_rate: float
    precision: float
    recall: float
    lift: float


@dataclass(frozen=True)
class BacktestResult:
    """Every date's point, plus what was tested."""

    tag_id: str
    value: str
    outcome: Outcome
    points: list[BacktestPoint]

    def to_frame(self) -> pd.DataFrame:
        """One row per date."""
        return pd.DataFrame([asdict(p) for p in self.points])

    def summary(self) -> dict[str, float]:
        """Mean precision, recall, lift and tag size over the complete dates."""
        done = [p for p in self.points if p.complete]
        if not done:
            return {"dates": 0.0}

        def mean(values: Sequence[float]) -> float:
            arr = np.asarray(values, dtype=float)
            return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")

        return {
            "dates": float(len(done)),
            "tagged": mean([p.tagged for p in done]),
            "precision": mean([p.precision for p in done]),
            "recall": mean([p.recall for p in done]),
            "lift": mean([p.lift for p in done]),
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def backtest(
    tag_id: str,
    catalogue: Catalogue,
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    dates: Sequence[pd.Timestamp | str],
    outcome: Outcome,
    build: FeatureBuilder,
    value: str | None = None,
    observed_until: pd.Timestamp | str | None = None,
) -> BacktestResult:
    """Evaluate ``tag_id`` at each date with only the data available then.

    Args:
        tag_id: A rule or fact tag of ``catalogue``.
        catalogue: The catalogue.
        customers: Canonical customers.
        events: Canonical events (all of them; each date sees only earlier ones).
        dates: The past dates.
        outcome: What the tag should predict (see :func:`parse_outcome`).
        build: ``(customers, events_before_date, as_of) -> feature frame``, e.g.
            ``lambda c, e, d: build_features(c, e, as_of=d)``.
        value: For multi-valued tags, the value that counts as "tagged" (required).
        observed_until: End of the observed data (default: the latest event); dates
            whose outcome window ends later are incomplete.

    Raises:
        BacktestError: The tag is a model tag, the value is missing or unknown, or no
            dates were given.
    """
    tag = catalogue.get(tag_id)
    if tag.source == "model":
        raise BacktestError(
            f"Tag '{tag_id}' is produced by a model; backtest rule and fact tags (models are "
            "evaluated by 'tagsmith models evaluate')."
        )
    if tag.value_type == "boolean":
        if value not in (None, "true"):
            raise BacktestError(f"Tag '{tag_id}' is boolean: its only value is 'true'.")
        value = "true"
    elif value is None:
        raise BacktestError(
            f"Tag '{tag_id}' has several values; pick the one to test with --value "
            f"(one of {tag.value_ids or 'the values in the data'})."
        )
    elif not tag.open_values and value not in tag.value_ids:
        raise BacktestError(
            f"Expected a value of '{tag_id}' among {tag.value_ids}. Got {value!r}."
            f"{suggest(value, tag.value_ids)}"
        )
    if not dates:
        raise BacktestError("Expected at least one backtest date. Got none.")
    ts = to_ns(events["occurred_at"])
    end = _utc(observed_until) if observed_until is not None else None
    end_ns = to_ns(end) if end is not None else (int(ts.max()) + 1 if len(ts) else 0)
    points = []
    for raw in dates:
        as_of = _utc(raw)
        cutoff = to_ns(as_of)
        before = events[ts < cutoff]
        features = build(customers, before, as_of)
        long = evaluate_tags(features, before, catalogue, as_of=as_of, tag_ids=[tag_id])
        hits = long.loc[long["value"] == value, "customer_id"]
        ids = features["customer_id"]
        tagged = np.asarray(ids.isin(pd.Index(hits)), dtype=bool)
        complete = cutoff + outcome.days * _DAY_NS <= end_ns
        n_tagged = int(tagged.sum())
        if complete:
            labels = outcome_labels(events, ids, as_of=as_of, outcome=outcome)
            positives = int(labels.sum())
            true_pos = int((labels & tagged).sum())
            base = _ratio(positives, len(ids))
            precision = _ratio(true_pos, n_tagged)
            recall = _ratio(true_pos, positives)
            lift = _ratio(precision, base) if base == base else float("nan")
        else:
            positives = true_pos = 0
            base = precision = recall = lift = float("nan")
        points.append(
            BacktestPoint(
                as_of=as_of,
                population=len(ids),
                tagged=n_tagged,
                positives=positives,
                true_positives=true_pos,
                complete=complete,
                base_rate=base,
                precision=precision,
                recall=recall,
                lift=lift,
            )
        )
    return BacktestResult(tag_id=tag_id, value=value, outcome=outcome, points=points)
