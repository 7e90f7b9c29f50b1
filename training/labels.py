"""Labels and cutoffs: what the predictors learn, with explicit, leak-free semantics.

At a cutoff ``c`` (a UTC timestamp; features see only events with
``occurred_at < c``):

- the **population** is every customer with at least one purchase before ``c``;
- **churn** is true when the customer makes no purchase in the horizon
  ``[c, c + H)``;
- **value** is the net purchase amount in ``[c, c + H)``: purchase amounts minus
  refund amounts (can be negative when refunds of earlier orders dominate).

The window is half-open at the end and closed at the cutoff so that every event is
either history (``< c``, seen by features) or outcome (``>= c``), never both and never
neither.

Rolling origins: the **test** cutoff is the latest with ``c + H <= last event day``;
the **validation** cutoff is the latest whose horizon ends by the test cutoff; the
**training** cutoffs step back monthly from the latest one whose horizon ends by the
validation cutoff. No outcome a slice learns from happens after the cutoff it is judged
on, so the reported metrics are what the model would have scored at that time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from training.errors import TrainingError

__all__ = [
    "CutoffPlan",
    "label_table",
    "plan_cutoffs",
]

_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class CutoffPlan:
    """Which cutoffs train, validate and test.

    Attributes:
        train: Training cutoffs, oldest first.
        validation: The cutoff for early stopping and calibration.
        test: The cutoff the reported metrics come from.
        horizon_days: Label horizon H in days.
    """

    train: tuple[pd.Timestamp, ...]
    validation: pd.Timestamp
    test: pd.Timestamp
    horizon_days: int

    @property
    def all(self) -> list[pd.Timestamp]:
        """Every cutoff, oldest first."""
        return [*self.train, self.validation, self.test]

    @property
    def horizon(self) -> pd.Timedelta:
        """The horizon as a timedelta."""
        return pd.Timedelta(days=self.horizon_days)


def _utc(ts: object) -> pd.Timestamp:
    out = pd.Timestamp(ts)  # type: ignore[arg-type]
    return out.tz_localize("UTC") if out.tzinfo is None else out.tz_convert("UTC")


def plan_cutoffs(
    first_purchase_at: pd.Timestamp,
    last_event_at: pd.Timestamp,
    *,
    horizon_days: int,
    n_cutoffs: int = 6,
    step_months: int = 1,
    cutoffs: Sequence[object] | None = None,
) -> CutoffPlan:
    """Choose the train/validation/test cutoffs (see the module docstring).

    Args:
        first_purchase_at: Time of the first purchase in the facts.
        last_event_at: Time of the last event in the facts; its day counts as observed.
        horizon_days: Label horizon H.
        n_cutoffs: Total cutoffs (>= 3: at least one training cutoff).
        step_months: Spacing of training cutoffs.
        cutoffs: Explicit cutoffs instead (dates or timestamps, any order): the latest
            tests, the one before validates, the rest train.

    Raises:
        TrainingError: The history is too short for the horizon, or explicit cutoffs
            break the rules (unlabelled, overlapping horizons, no population).
    """
    if n_cutoffs < 3:
        raise TrainingError(
            f"Expected at least 3 cutoffs (train, validation, test). Got {n_cutoffs}."
        )
    horizon = pd.Timedelta(days=horizon_days)
    first = _utc(first_purchase_at)
    # The last event's day is taken as fully observed: labels may use it.
    data_end = _utc(last_event_at).normalize() + _DAY
    span_days = (data_end - first) / _DAY
    if cutoffs is not None:
        return _explicit_plan(cutoffs, first=first, data_end=data_end, horizon_days=horizon_days)

    test = data_end - horizon
    if test <= first:
        raise TrainingError(
            f"Expected a history longer than the {horizon_days}-day label horizon. Got purchases "
            f"from {first.date()} to the last event on {(data_end - _DAY).date()} "
            f"({span_days:.0f} days): no cutoff has both a history and a full horizon. "
            "Use a shorter --horizon or import more history."
        )
    validation = test - horizon
    anchor = validation - horizon
    train = [anchor - pd.DateOffset(months=step_months * k) for k in range(n_cutoffs - 2)]
    train = sorted(_utc(t) for t in train if t > first)
    if not train:
        needed = 3 * horizon_days
        raise TrainingError(
            f"Expected at least {needed} days between the first purchase and the last event "
            f"for a {horizon_days}-day horizon (training, validation and test horizons must "
            f"not overlap). Got {span_days:.0f} days ({first.date()} to "
            f"{(data_end - _DAY).date()}). Use a shorter --horizon or import more history."
        )
    return CutoffPlan(
        train=tuple(train), validation=validation, test=test, horizon_days=horizon_days
    )


def _explicit_plan(
    cutoffs: Sequence[object], *, first: pd.Timestamp, data_end: pd.Timestamp, horizon_days: int
) -> CutoffPlan:
    try:
        stamps = sorted({_utc(c) for c in cutoffs})
    except (TypeError, ValueError) as exc:
        raise TrainingError(
            f"Expected cutoffs as dates (YYYY-MM-DD). Got {list(cutoffs)}."
        ) from exc
    if len(stamps) < 3:
        raise TrainingError(
            f"Expected at least 3 distinct cutoffs (train, validation, test). Got {len(stamps)}."
        )
    horizon = pd.Timedelta(days=horizon_days)
    for c in stamps:
        if c + horizon > data_end:
            raise TrainingError(
                f"Expected every cutoff plus the {horizon_days}-day horizon to end by the last "
                f"event day {(data_end - _DAY).date()}. Got cutoff {c.date()}, whose horizon "
                f"ends {(c + horizon).date()}: its labels are not known yet."
            )
        if c <= first:
            raise TrainingError(
                f"Expected every cutoff after the first purchase ({first.date()}). "
                f"Got cutoff {c.date()}, which has no population."
            )
    *train, validation, test = stamps
    if validation + horizon > test:
        raise TrainingError(
            f"Expected the validation cutoff's horizon to end by the test cutoff {test.date()}. "
            f"Got validation cutoff {validation.date()}, whose horizon ends "
            f"{(validation + horizon).date()}: training would see test-period outcomes."
        )
    late = [t.date().isoformat() for t in train if t + horizon > validation]
    if late:
        raise TrainingError(
            f"Expected every training cutoff's horizon to end by the validation cutoff "
            f"{validation.date()}. Got training cutoffs {late}, whose horizons reach past it."
        )
    return CutoffPlan(
        train=tuple(train), validation=validation, test=test, horizon_days=horizon_days
    )


_LABEL_SQL = """
SELECT
    e.customer_id,
    c.cutoff,
    count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) AS n_purchases,
    count(DISTINCT CAST(e.occurred_at AS DATE))
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) AS n_purchase_days,
    (epoch(c.cutoff) - epoch(min(e.occurred_at)
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff))) / 86400.0
        AS days_since_first_purchase,
    (epoch(c.cutoff) - epoch(max(e.occurred_at)
        FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff))) / 86400.0
        AS days_since_last_purchase,
    coalesce(sum(e.amount) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff), 0)
        AS purchase_amount,
    coalesce(sum(e.amount) FILTER (e.event_type = 'refund' AND e.occurred_at < c.cutoff), 0)
        AS refund_amount,
    count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at >= c.cutoff)
        AS horizon_purchases,
    coalesce(sum(e.amount) FILTER (e.event_type = 'purchase' AND e.occurred_at >= c.cutoff), 0)
      - coalesce(sum(e.amount) FILTER (e.event_type = 'refund' AND e.occurred_at >= c.cutoff), 0)
        AS value
FROM ev AS e
JOIN cutoffs AS c ON e.occurred_at < c.cutoff + to_days(CAST(c.horizon_days AS INTEGER))
WHERE e.event_type IN ('purchase', 'refund')
GROUP BY e.customer_id, c.cutoff
HAVING count(*) FILTER (e.event_type = 'purchase' AND e.occurred_at < c.cutoff) > 0
ORDER BY c.cutoff, e.customer_id
"""


def label_table(
    events: pd.DataFrame, cutoffs: Sequence[pd.Timestamp], *, horizon_days: int
) -> pd.DataFrame:
    """Population, purchase history summary and labels at each cutoff.

    Args:
        events: Canonical events (only ``customer_id``, ``occurred_at``,
            ``event_type`` and ``amount`` are read).
        cutoffs: UTC cutoffs.
        horizon_days: Label horizon H.

    Returns:
        One row per (customer in the population, cutoff), sorted by cutoff then
        customer: ``customer_id``, ``cutoff``, history summary (``n_purchases``,
        ``n_purchase_days``, ``days_since_first_purchase``, ``days_since_last_purchase``,
        ``purchase_amount``, ``refund_amount``), and labels ``horizon_purchases``,
        ``churn`` (bool) and ``value`` (float, net amount).
    """
    ev = events[["customer_id", "occurred_at", "event_type", "amount"]]
    cut = pd.DataFrame(
        {
            "cutoff": pd.Series([_utc(c) for c in cutoffs], dtype="datetime64[us, UTC]"),
            "horizon_days": horizon_days,
        }
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET threads = 2")
        con.register("ev", ev)
        con.register("cutoffs", cut)
        out = con.sql(_LABEL_SQL).to_arrow_table().to_pandas()
    finally:
        con.close()
    out["customer_id"] = out["customer_id"].astype("string")
    out["cutoff"] = pd.to_datetime(out["cutoff"], utc=True).astype("datetime64[us, UTC]")
    for col in ("n_purchases", "n_purchase_days", "horizon_purchases"):
        out[col] = out[col].astype(np.int64)
    for col in (
        "days_since_first_purchase",
        "days_since_last_purchase",
        "purchase_amount",
        "refund_amount",
        "value",
    ):
        out[col] = out[col].astype(np.float64)
    out["churn"] = out["horizon_purchases"] == 0
    return out.reset_index(drop=True)
