"""Validation of queued live batches: the file import's checks, once per run of batches.

Batches applied together (group commit, :mod:`streaming.tagger`) must each get what they
would get applied alone, one after the other: an earlier batch's events count as stored
for a later one. Validating each batch on its own gives exactly that, but costs the
validation's fixed part (~50-100 ms of pandas set-up) once per batch, so a backlog of
many small ``POST /events`` batches was tagged at a fraction of the rate of one big one.

So consecutive batches that share no customer and no event id are validated in one call,
as one text table whose line ranges are the batches (their accepted rows, quarantine
rows and counts are cut back out by range, renumbered from their own first line): with
no customer in common, no check of one batch's rows depends on another's (every
check is per row, against the stored customers, or between rows of one customer), so
the results are those of validating them one by one. A batch that shares a customer or
an event id with the run before it starts a new run, validated with the earlier runs'
accepted events as stored. Should a joint call fail, each batch is validated alone, so
a bad batch gets its own error and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.live import LiveEventLog
from features.schema import EVENT_COLUMNS, FactsConfig, arrow_table
from features.validation import validate_events
from streaming.index import CustomerFacts
from streaming.records import (
    PENDING_TEXT,
    SENTINEL_ID,
    SENTINEL_SIGNUP,
    event_id_of,
    raw_events,
    record_text,
)

__all__ = ["Checked", "check_batches"]


@dataclass
class Checked:
    """One batch validated, not stored yet.

    Attributes:
        request: The caller's queued batch (``records``, ``source``).
        repeats: Records whose ``event_id`` is stored already (or in an earlier batch).
        accepted: Canonical events that passed every check.
        ids: Event ids of ``accepted``, row for row.
        counts: Quarantined events per reason code.
        quarantine: The quarantine rows (with the batch's own source and line numbers).
    """

    request: Any
    repeats: list[Any]
    accepted: pd.DataFrame
    ids: list[str]
    counts: dict[str, int]
    quarantine: pd.DataFrame


@dataclass
class _Prepared:
    """A batch split into id repeats and the fresh records validation reads."""

    request: Any
    repeats: list[Any]
    ids: list[str]  # event ids of the object records among ``records``, in order
    records: list[Any]  # the fresh records (objects or not), in the batch's order


def _customers_and_ids(records: Sequence[Any]) -> tuple[set[str], set[str]]:
    dicts = [r for r in records if isinstance(r, dict)]
    return (
        {str(r.get("customer_id")).strip() for r in dicts},
        {event_id_of(r) for r in dicts},
    )


def check_batches(
    requests: Sequence[Any],
    *,
    now: pd.Timestamp,
    index: CustomerFacts,
    live: LiveEventLog,
    config: FactsConfig,
    on_error: Callable[[Any, Exception], None],
    joint: bool = True,
) -> list[Checked]:
    """Validate queued batches in order, as if each were applied after the ones before.

    Args:
        requests: The batches (each with ``records`` and ``source``), oldest first.
        now: The time of the micro-batch.
        index: Stored customers and events.
        live: The live event log (ids already stored).
        config: Facts config.
        on_error: Called with a batch and its exception when that batch alone fails
            validation; it is then left out of the result.
        joint: Validate runs of batches sharing no customer or event id in one call
            (False: every batch alone, one call each; the same results, slower).

    Returns:
        The batches that passed, in order.
    """
    checked: list[Checked] = []
    run: list[Any] = []
    run_customers: set[str] = set()
    run_ids: set[str] = set()
    for request in requests:
        customers, ids = _customers_and_ids(request.records)
        if run and (not joint or customers & run_customers or ids & run_ids):
            checked += _check_run(run, now, index, live, config, checked, on_error)
            run, run_customers, run_ids = [], set(), set()
        run.append(request)
        run_customers |= customers
        run_ids |= ids
    if run:
        checked += _check_run(run, now, index, live, config, checked, on_error)
    return checked


def _check_run(
    run: list[Any],
    now: pd.Timestamp,
    index: CustomerFacts,
    live: LiveEventLog,
    config: FactsConfig,
    earlier: list[Checked],
    on_error: Callable[[Any, Exception], None],
) -> list[Checked]:
    """Validate batches sharing no customer or event id in one call (alone on failure)."""
    if len(run) > 1:
        try:
            return _validate(run, now, index, live, config, earlier)
        except Exception:  # noqa: S110 - each batch is validated alone below
            pass
    out: list[Checked] = []
    for request in run:
        try:
            out += _validate([request], now, index, live, config, [*earlier, *out])
        except Exception as exc:  # this batch's own problem: the others go on
            on_error(request, exc)
    return out


def _prepare(request: Any, k: int, live: LiveEventLog, earlier: list[Checked]) -> _Prepared:
    """Split off event-id repeats (stored, or in an earlier batch of the micro-batch)."""
    records = request.records
    dicts = [(i, r) for i, r in enumerate(records) if isinstance(r, dict)]
    event_ids = [event_id_of(r) for _, r in dicts]
    stored_ids = live.known(event_ids, refresh=k == 0)  # one folder listing per run
    if earlier:
        pending = {i for c in earlier for i in c.ids}
        stored_ids = stored_ids | np.fromiter(
            (i in pending for i in event_ids), dtype=bool, count=len(event_ids)
        )
    repeats = [r for (_, r), k_ in zip(dicts, stored_ids, strict=True) if k_]
    fresh_ids = [e for e, k_ in zip(event_ids, stored_ids, strict=True) if not k_]
    fresh_pos = {i for (i, _), k_ in zip(dicts, stored_ids, strict=True) if not k_}
    fresh = [r for i, r in enumerate(records) if i in fresh_pos or not isinstance(r, dict)]
    return _Prepared(request, repeats, fresh_ids, fresh)


def _validate(
    run: list[Any],
    now: pd.Timestamp,
    index: CustomerFacts,
    live: LiveEventLog,
    config: FactsConfig,
    earlier: list[Checked],
) -> list[Checked]:
    """One ``validate_events`` call over one text table of the run's batches.

    The batches' records are rows of one table, each batch a range of its lines (one
    table, not one per batch: its set-up is most of the cost of a small batch). With no
    customer or event id in common, no row's verdict depends on another batch's rows;
    each batch's accepted rows, quarantine rows (its own line numbers and source) and
    counts are cut back out by line range.
    """
    prepared = [_prepare(request, k, live, earlier) for k, request in enumerate(run)]
    starts = np.cumsum([0] + [len(p.records) for p in prepared])
    # The records' texts are rendered for the rejected ones only (_split).
    raw, ids = raw_events(
        [r for p in prepared for r in p.records],
        # Named after its batches' sources (the quarantine rows get their own batch's).
        " + ".join(p.request.source for p in prepared),
        texts=False,
        ids=[i for p in prepared for i in p.ids],
    )
    # Only the batches' own customers: checks against a million stored ones per batch
    # would cost more than the batch.
    mentioned = index.known(raw.data["customer_id"].dropna().astype(str).str.strip())
    known = index.customers_of(mentioned)[["customer_id", "signup_at"]]
    sentinel = pd.DataFrame(
        {
            "customer_id": pd.Series([SENTINEL_ID], dtype=known["customer_id"].dtype),
            "signup_at": pd.Series([pd.Timestamp(SENTINEL_SIGNUP)]).astype(
                known["signup_at"].dtype
            ),
        }
    )
    extra = [c.accepted[c.accepted["customer_id"].isin(mentioned)] for c in earlier]
    extra = [e[list(EVENT_COLUMNS)] for e in extra if len(e)]

    def stored_events(keys: pa.Table) -> pa.Table | None:
        # Only stored events sharing a (customer, time) pair with a new row can be its
        # exact duplicates: a few rows, not the ~20 events of each mentioned customer
        # (100,000 rows and a frame of them per 5,000-event batch).
        found = index.events_matching(keys)
        parts = ([] if found is None else [found]) + extra
        if not parts:
            return None
        return arrow_table(parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True))

    result = validate_events(
        [raw],
        config=config,
        now=now,
        customers=pd.concat([known, sentinel], ignore_index=True),
        stored_events=stored_events,
        create_unknown=False,
    )
    accepted = result.accepted[result.accepted["customer_id"] != SENTINEL_ID]
    quarantine = result.quarantine
    is_real = (quarantine["original_line"] != "").to_numpy(dtype=bool)
    real = quarantine[is_real]
    lines = real["line_number"].to_numpy(dtype=np.int64)
    # Parsed rows (not the sentinels) in order, and which of them passed: the accepted
    # rows are those, in that order.
    parsed = raw.line_number[: len(ids)]
    ok = ~np.isin(parsed, lines)
    out: list[Checked] = []
    taken = 0
    for k, p in enumerate(prepared):
        first, last = int(starts[k]), int(starts[k + 1])
        mine = (parsed > first) & (parsed <= last)
        n_ok = int((mine & ok).sum())
        in_batch = (lines > first) & (lines <= last)
        out.append(
            _split(
                p,
                accepted.iloc[taken : taken + n_ok],
                real[in_batch],
                first,
                [i for i, m, o in zip(ids, mine, ok, strict=True) if m and o],
            )
        )
        taken += n_ok
    return out


def _split(
    p: _Prepared, accepted: pd.DataFrame, quarantine: pd.DataFrame, first: int, ids: list[str]
) -> Checked:
    """One batch's share of a run's validation: its lines renumbered from 1."""
    real = quarantine.copy()
    real["source_file"] = str(Path(p.request.source))
    real["line_number"] = real["line_number"].to_numpy(dtype=np.int64) - first
    pending = (real["original_line"] == PENDING_TEXT).to_numpy(dtype=bool)
    if pending.any():
        texts = real["original_line"].to_numpy(dtype=object)
        lines = real["line_number"].to_numpy()[pending]
        texts[pending] = [record_text(p.records[int(n) - 1]) for n in lines]
        real["original_line"] = pd.Series(
            texts, index=real.index, dtype=real["original_line"].dtype
        )
    counts: dict[str, int] = {}
    for reason in real["reason"]:
        counts[str(reason)] = counts.get(str(reason), 0) + 1
    return Checked(
        request=p.request,
        repeats=p.repeats,
        accepted=accepted.reset_index(drop=True),
        ids=ids,
        counts=dict(sorted(counts.items())),
        quarantine=real.reset_index(drop=True),
    )
