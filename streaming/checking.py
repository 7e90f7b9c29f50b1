"""Validation of queued live batches: the file import's checks, once per run of batches.

Batches applied together (group commit, :mod:`streaming.tagger`) must each get what they
would get applied alone, one after the other: an earlier batch's events count as stored
for a later one. Validating each batch on its own gives exactly that, but costs the
validation's fixed part (~50-100 ms of pandas set-up) once per batch, so a backlog of
many small ``POST /events`` batches was tagged at a fraction of the rate of one big one.

So consecutive batches that share no event id are validated in one call, as one text
table whose line ranges are the batches (their accepted rows, quarantine rows and counts
are cut back out by range, renumbered from their own first line). Every check is per
row or against the stored customers, except one: the exact-duplicate check compares a
row with the earlier rows of the table and with stored events, and only rows of one
customer at one instant can be exact duplicates. Validated one by one, a later batch
sees an earlier one's accepted events as stored; in one table it sees them as earlier
rows, and the two differ (an identical row without an order id is a second event within
a table, a duplicate of a stored one). So after the joint call each table is checked
for such a pair across batches: a (customer, time) pair accepted in two batches, or a
duplicate row whose customer another batch mentions. Without one, no verdict depended
on another batch's rows and the results are those of validating the batches one by
one. With one, the batches before the first batch of such a pair keep their results (a
row's verdict depends only on rows before it) and the rest are validated again, the
kept ones' accepted events counting as stored. A batch sharing an event id with the run
before it starts a new run the same way. Should a joint call fail, each batch is
validated alone, so a bad batch gets its own error and the others go on.

Splitting by shared customer, as before, cost a validation call per split: 50 queued
100-event requests of random customers of a million split about a dozen times, and the
group took 0.7 s of CPU to validate against 0.09 s for the same 5,000 events in one
request, so a backlog of ``POST /events`` grew its own validation cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import ReasonCode
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


def _event_ids(records: Sequence[Any]) -> set[str]:
    return {event_id_of(r) for r in records if isinstance(r, dict)}


def _customers(records: Sequence[Any]) -> set[str]:
    """The customer ids a batch's records name, as text (stripped: a superset of the
    customers validation sees, which is what the conflict check needs)."""
    return {str(r.get("customer_id")).strip() for r in records if isinstance(r, dict)}


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
        joint: Validate runs of batches sharing no event id in one call, again from
            the first batch whose verdicts another batch's rows could change (False:
            every batch alone, one call each; the same results, slower).

    Returns:
        The batches that passed, in order.
    """
    checked: list[Checked] = []
    run: list[Any] = []
    run_ids: set[str] = set()
    for request in requests:
        ids = _event_ids(request.records)
        if run and (not joint or ids & run_ids):
            checked += _check_run(run, now, index, live, config, checked, on_error)
            run, run_ids = [], set()
        run.append(request)
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
    """Validate batches sharing no event id together (alone on failure).

    One call over all of them; when a batch's verdicts could depend on an earlier
    batch's rows (:func:`_first_conflict`), the batches before it keep their results
    and the rest are validated again after them, so a conflict costs one more call.
    """
    if len(run) > 1:
        try:
            out: list[Checked] = []
            rest = run
            while rest:
                results, conflict = _validate(rest, now, index, live, config, [*earlier, *out])
                if conflict is None:
                    return out + results
                out += results[:conflict]
                rest = rest[conflict:]
            return out
        except Exception:  # noqa: S110 - each batch is validated alone below
            pass
    out = []
    for request in run:
        try:
            out += _validate([request], now, index, live, config, [*earlier, *out])[0]
        except Exception as exc:  # this batch's own problem: the others go on
            on_error(request, exc)
    return out


def _prepare(request: Any, k: int, live: LiveEventLog, pending: set[str]) -> _Prepared:
    """Split off event-id repeats (stored, or in ``pending``: the ids of the batches of
    the micro-batch validated earlier)."""
    records = request.records
    dicts = [(i, r) for i, r in enumerate(records) if isinstance(r, dict)]
    event_ids = [event_id_of(r) for _, r in dicts]
    stored_ids = live.known(event_ids, refresh=k == 0)  # one folder listing per run
    if pending:
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
) -> tuple[list[Checked], int | None]:
    """One ``validate_events`` call over one text table of the run's batches.

    The batches' records are rows of one table, each batch a range of its lines (one
    table, not one per batch: its set-up is most of the cost of a small batch); each
    batch's accepted rows, quarantine rows (its own line numbers and source) and counts
    are cut back out by line range.

    Returns:
        One result per batch, and the index of the first batch whose verdicts another
        batch's rows could have changed (:func:`_first_conflict`; None: none, every
        result is what validating the batches one by one gives). Results from that
        index on are not valid.
    """
    pending = {i for c in earlier for i in c.ids}
    prepared = [_prepare(request, k, live, pending) for k, request in enumerate(run)]
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
    mentioned = index.known(raw.data["customer_id"].dropna().str.strip().tolist())
    known = index.customers_of(mentioned, ["customer_id", "signup_at"])
    sentinel = pd.DataFrame(
        {
            "customer_id": pd.Series([SENTINEL_ID], dtype=known["customer_id"].dtype),
            "signup_at": pd.Series([pd.Timestamp(SENTINEL_SIGNUP)]).astype(
                known["signup_at"].dtype
            ),
        }
    )
    # The earlier batches' accepted events count as stored: those of the customers
    # mentioned here, filtered once over all of them (not once per earlier batch).
    before = [c.accepted for c in earlier if len(c.accepted)]
    extra: list[pd.DataFrame] = []
    if before:
        joined = before[0] if len(before) == 1 else pd.concat(before, ignore_index=True)
        mine = joined[joined["customer_id"].isin(mentioned)]
        extra = [mine[list(EVENT_COLUMNS)]] if len(mine) else []

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
    # Which batch each line is in (line k + 1 of the table is record k).
    batch_of_line = np.repeat(np.arange(len(prepared)), np.diff(starts))
    batch_of_accepted = batch_of_line[parsed[ok] - 1]
    conflict = None
    if len(prepared) > 1:
        duplicate = (real["reason"] == ReasonCode.DUPLICATE.value).to_numpy(dtype=bool)
        dup_lines = lines[duplicate]
        conflict = _first_conflict(
            # Read only for the duplicate rows (a set per batch cost ~1.5 ms per 800).
            [_customers(p.records) for p in prepared] if len(dup_lines) else [],
            accepted["customer_id"],
            accepted["occurred_at"],
            batch_of_accepted,
            [
                (int(batch_of_line[n - 1]), str(raw.data["customer_id"].iloc[int(row)]).strip())
                for n, row in zip(dup_lines, np.searchsorted(parsed, dup_lines), strict=True)
            ],
        )
    out: list[Checked] = []
    taken = 0
    ids_ok = np.asarray(ids, dtype=object)[ok]  # the accepted rows' ids, in order
    for k, p in enumerate(prepared):
        if conflict is not None and k >= conflict:
            break  # not valid from here: validated again by the caller
        first, last = int(starts[k]), int(starts[k + 1])
        n_ok = int((batch_of_accepted == k).sum())
        # Usually nothing real is quarantined: no mask and filter per batch then.
        mine = real[(lines > first) & (lines <= last)] if len(real) else real
        out.append(
            _split(
                p,
                accepted.iloc[taken : taken + n_ok],
                mine,
                first,
                ids_ok[taken : taken + n_ok].tolist(),
            )
        )
        taken += n_ok
    return out, conflict


def _first_conflict(
    customers: list[set[str]],
    accepted_customer: pd.Series,
    accepted_at: pd.Series,
    accepted_batch: np.ndarray,
    duplicates: list[tuple[int, str]],
) -> int | None:
    """The first batch whose verdicts, validated in one table with the batches before
    it, may differ from validating it after them (None: no such batch).

    Only the exact-duplicate check looks at other rows, and only at rows of the same
    customer at the same instant. Validated one by one, a batch's rows are compared
    with the earlier batches' accepted events as stored; in one table, with their rows
    as earlier rows of the table. The verdicts agree when no row that reached that check
    in one batch shares its customer and time with such a row in another. Those rows
    are the accepted ones and the ones quarantined as duplicates, so a batch conflicts
    with an earlier one when a (customer, time) pair was accepted in both, or when one
    of the two has a duplicate row of a customer the other names (conservative: the
    duplicate's time is not looked at).

    Args:
        customers: The customer ids each batch's records name (read for
            ``duplicates`` only: may be empty without them).
        accepted_customer: Customer of each accepted row, in table order.
        accepted_at: Its time.
        accepted_batch: Its batch.
        duplicates: (batch, customer id) of each row quarantined as a duplicate.

    Returns:
        The later batch of the first such pair (by that batch's index).
    """
    first: int | None = None
    if len(accepted_batch) > 1:
        # Rows sorted by (customer, time, batch): where a pair's batch changes, the row
        # after is that pair's second batch or a later one, so the least such batch is
        # the least second batch of any pair (no frame, no group per pair).
        c = pd.factorize(accepted_customer.astype(str))[0]
        # UTC instants (a tz-aware column's plain to_numpy() makes objects).
        t = accepted_at.dt.tz_convert(None).to_numpy().view(np.int64)
        b = np.asarray(accepted_batch, dtype=np.int64)
        order = np.lexsort((b, t, c))
        c, t, b = c[order], t[order], b[order]
        later_batch = (c[1:] == c[:-1]) & (t[1:] == t[:-1]) & (b[1:] != b[:-1])
        if later_batch.any():
            first = int(b[1:][later_batch].min())
    for batch, customer in duplicates:
        others = [k for k, named in enumerate(customers) if k != batch and customer in named]
        if others:
            later = batch if min(others) < batch else min(others)
            first = later if first is None else min(first, later)
    return first


def _split(
    p: _Prepared, accepted: pd.DataFrame, quarantine: pd.DataFrame, first: int, ids: list[str]
) -> Checked:
    """One batch's share of a run's validation: its lines renumbered from 1."""
    if not len(quarantine):  # the usual case: nothing to renumber, render or count
        return Checked(
            request=p.request,
            repeats=p.repeats,
            accepted=accepted.reset_index(drop=True),
            ids=ids,
            counts={},
            quarantine=quarantine.reset_index(drop=True),
        )
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
