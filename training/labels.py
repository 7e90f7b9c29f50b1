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

import numpy as np
import pandas as pd

from training.errors import TrainingError

__all__ = [
    "CutoffPlan",
    "label_table",
    "plan_cutoffs",
    "plan_training",
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
        grouped: The history is too short for a time split: the cutoffs' horizons
            overlap, and customers (not cutoffs) are split into training, validation
            and test groups. Training customers contribute rows at every cutoff in
            ``train``; validation and test customers only at the latest cutoff, which
            is then both ``validation`` and ``test``.
    """

    train: tuple[pd.Timestamp, ...]
    validation: pd.Timestamp
    test: pd.Timestamp
    horizon_days: int
    grouped: bool = False

    @property
    def all(self) -> list[pd.Timestamp]:
        """Every distinct cutoff, oldest first."""
        return sorted({*self.train, self.validation, self.test})

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


def plan_training(
    first_purchase_at: pd.Timestamp,
    last_event_at: pd.Timestamp,
    *,
    horizon_days: int,
    n_cutoffs: int = 6,
    step_months: int = 1,
    cutoffs: Sequence[object] | None = None,
    min_history_days: int = 60,
) -> CutoffPlan:
    """The time-split plan of :func:`plan_cutoffs` when the history allows it, else a
    customer-grouped plan: any horizon with one labelled window trains.

    The grouped plan's latest cutoff is ``last day + 1 - H``; earlier cutoffs step back
    ``step_months`` at a time (``n_cutoffs`` in all) while at least ``min_history_days``
    of purchases precede them. Their horizons overlap, so the split is by customer
    (see :attr:`CutoffPlan.grouped`): the test metrics are then in-period, not
    out-of-time.

    Raises:
        TrainingError: Not even one cutoff has ``min_history_days`` of history before
            it and a full horizon after it (or explicit cutoffs break the rules).
    """
    if cutoffs is not None:
        return plan_cutoffs(
            first_purchase_at, last_event_at, horizon_days=horizon_days, cutoffs=cutoffs
        )
    try:
        return plan_cutoffs(
            first_purchase_at,
            last_event_at,
            horizon_days=horizon_days,
            n_cutoffs=n_cutoffs,
            step_months=step_months,
        )
    except TrainingError:
        pass
    first = _utc(first_purchase_at)
    data_end = _utc(last_event_at).normalize() + _DAY
    earliest = first + pd.Timedelta(days=min_history_days)
    latest = data_end - pd.Timedelta(days=horizon_days)
    if latest < earliest:
        span_days = (data_end - first) / _DAY
        raise TrainingError(
            f"Expected at least {horizon_days + min_history_days} days between the first "
            f"purchase and the last event for a {horizon_days}-day horizon ({min_history_days} "
            f"days of history before a cutoff, training.min_history_days, plus the horizon "
            f"after it). Got {span_days:.0f} days ({first.date()} to "
            f"{(data_end - _DAY).date()}). Use a shorter --horizon or import more history."
        )
    stamps = [latest - pd.DateOffset(months=step_months * k) for k in range(max(n_cutoffs, 1))]
    train = tuple(sorted(_utc(t) for t in stamps if _utc(t) >= earliest))
    return CutoffPlan(
        train=train, validation=latest, test=latest, horizon_days=horizon_days, grouped=True
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


_US_PER_DAY = 86_400_000_000
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class _Typed:
    """Events of one type sorted by (customer code, time)."""

    code: np.ndarray  # int64 customer code (rank of the customer id)
    t: np.ndarray  # int64 microseconds since the epoch
    amount: np.ndarray  # float64, missing amounts as 0 (a sum skips them)

    def take(self, order: np.ndarray) -> _Typed:
        return _Typed(self.code[order], self.t[order], self.amount[order])


def _events_by_type(events: pd.DataFrame) -> tuple[_Typed, _Typed, pd.Index]:
    """Purchases and refunds with customer codes, and the customer id of each code.

    Codes are ranks of the ids in sorted order, so code order is customer-id order.
    Rows without a customer or a time are left out (they cannot be labelled).
    """
    kind = events["event_type"]
    stamps = pd.DatetimeIndex(events["occurred_at"])
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    keep = (
        kind.isin(["purchase", "refund"]).to_numpy(dtype=bool, na_value=False)
        & ~np.asarray(stamps.isna())
        & events["customer_id"].notna().to_numpy(dtype=bool)
    )
    rows = np.flatnonzero(keep)
    t = stamps.as_unit("us").asi8[rows]
    amount = events["amount"].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
    amount = np.where(np.isnan(amount), 0.0, amount)
    code, ids = pd.factorize(events["customer_id"].iloc[rows], sort=True)
    purchase = (kind.iloc[rows] == "purchase").to_numpy(dtype=bool, na_value=False)
    code = code.astype(np.int64)
    parts = []
    for mask in (purchase, ~purchase):
        typed = _Typed(code[mask], t[mask], amount[mask])
        # Event logs usually arrive in time order: then a stable sort by customer is
        # enough; otherwise sort by (customer, time).
        t_sorted = bool(np.all(typed.t[1:] >= typed.t[:-1]))
        order = (
            np.argsort(typed.code, kind="stable") if t_sorted else np.lexsort((typed.t, typed.code))
        )
        parts.append(typed.take(order))
    return parts[0], parts[1], pd.Index(ids)


def label_table(
    events: pd.DataFrame, cutoffs: Sequence[pd.Timestamp], *, horizon_days: int
) -> pd.DataFrame:
    """Population, purchase history summary and labels at each cutoff.

    One sort of the purchases by (customer, time) serves every cutoff: the purchases
    before a cutoff are a prefix of each customer's run, so counts and sums are
    bincounts over a mask, and the first and last purchase before the cutoff are the
    run's first element and the prefix's last.

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
    stamps = sorted({_utc(c) for c in cutoffs})
    purchases, refunds, ids = _events_by_type(events)
    n_ids = len(ids)
    p_code, p_t, p_amount = purchases.code, purchases.t, purchases.amount
    r_code, r_t, r_amount = refunds.code, refunds.t, refunds.amount
    # Each customer's run of purchases starts at run_start[code].
    run_start = np.zeros(n_ids + 1, dtype=np.int64)
    np.cumsum(np.bincount(p_code, minlength=n_ids), out=run_start[1:])
    # The first purchase of each (customer, UTC day): days with a purchase before a
    # cutoff are those whose first purchase is before it.
    day = np.floor_divide(p_t, _US_PER_DAY)
    new_day = np.ones(len(p_t), dtype=bool)
    new_day[1:] = (p_code[1:] != p_code[:-1]) | (day[1:] != day[:-1])
    horizon = horizon_days * _US_PER_DAY

    def per_customer(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=n_ids)

    parts: list[pd.DataFrame] = []
    for cutoff in stamps:
        c = (cutoff - _EPOCH) // pd.Timedelta(microseconds=1)
        before = p_t < c
        within = (p_t >= c) & (p_t < c + horizon)
        n_before = np.bincount(p_code[before], minlength=n_ids)
        pop = np.flatnonzero(n_before)
        first_t = p_t[run_start[pop]]
        last_t = p_t[run_start[pop] + n_before[pop] - 1]
        r_before = r_t < c
        r_within = (r_t >= c) & (r_t < c + horizon)
        refund_before = per_customer(r_code, np.where(r_before, r_amount, 0.0))[pop]
        refund_within = per_customer(r_code, np.where(r_within, r_amount, 0.0))[pop]
        bought_within = per_customer(p_code, np.where(within, p_amount, 0.0))[pop]
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": ids[pop],
                    "cutoff": np.full(len(pop), c, dtype="datetime64[us]"),
                    "n_purchases": n_before[pop].astype(np.int64),
                    "n_purchase_days": np.bincount(p_code[before & new_day], minlength=n_ids)[
                        pop
                    ].astype(np.int64),
                    "days_since_first_purchase": (c - first_t) / _US_PER_DAY,
                    "days_since_last_purchase": (c - last_t) / _US_PER_DAY,
                    "purchase_amount": per_customer(p_code, np.where(before, p_amount, 0.0))[pop],
                    "refund_amount": refund_before,
                    "horizon_purchases": np.bincount(p_code[within], minlength=n_ids)[pop].astype(
                        np.int64
                    ),
                    "value": bought_within - refund_within,
                }
            )
        )
    columns = [
        "customer_id",
        "cutoff",
        "n_purchases",
        "n_purchase_days",
        "days_since_first_purchase",
        "days_since_last_purchase",
        "purchase_amount",
        "refund_amount",
        "horizon_purchases",
        "value",
    ]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in columns})
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
