"""Validating an import's events one block at a time, with the verdicts of a whole-file run.

:class:`EventBlocks` runs the checks of :func:`features.validation.validate_events` on
each block :func:`features.chunks.read_chunks` yields, in the same order and with the
same reason codes, messages, line numbers and quarantine rows. What spans blocks is
carried between them:

* customers created from events (``unknown_customer: create`` or derived): a customer
  first seen in one block is known in the next, with the earliest time of any of its
  events (so, as in a whole-file run, none of its events is before its signup);
* exact duplicates: every candidate row's hash is kept (8 bytes a row); a new row whose
  hash an earlier block holds is compared value by value with those earlier rows, which
  the :class:`~features.spill.EventSpill` keeps, so a copy in another block counts as
  "an earlier row in this import" and repeats without an order id are counted across
  the whole import;
* per-file counts, and the refusal of a file none of whose rows is valid (decided when
  the whole file has been read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.checks import repeat_rows
from features.coding import sorted_hashes
from features.errors import FactFileError
from features.id_index import IdIndex
from features.io import RawTable
from features.quarantine import FileCounts, Rejects, assemble, finish, quoted, refuse_all_rejected
from features.schema import (
    EVENT_COLUMNS,
    EVENT_DTYPES,
    TIMESTAMP_DTYPE,
    FactsConfig,
    ReasonCode,
    arrow_table,
    check_amounts,
    check_events,
)
from features.spill import EventSpill, filter_rows, row_hashes
from features.store_files import StoredRows
from features.validation import (
    Dedupe,
    erased_ids,
    event_fields,
    id_array,
    mark_before_signup,
    naive_utc,
)

__all__ = ["EventBlocks", "EventsTally", "PreparedBlock"]


@dataclass
class EventsTally:
    """What validating every block found.

    Attributes:
        quarantine: Rejected rows of every block, by file and line.
        files: Counts per file.
        created_customers: Customers created from events (``customer_id``,
            ``signup_at``), those with at least one accepted event.
        identical_kept: Accepted rows identical to an earlier row, kept as separate.
        accepted: Accepted events (they are in the spill).
    """

    quarantine: pd.DataFrame
    files: list[FileCounts]
    created_customers: pd.DataFrame
    identical_kept: int = 0
    accepted: int = 0


@dataclass
class PreparedBlock:
    """One block after :meth:`EventBlocks.prepare`: what :meth:`EventBlocks.commit`
    needs (the raw block and its frame for the quarantine, the verdicts so far, the
    candidates as Arrow with their row hashes in row order)."""

    raw: RawTable
    frame: pd.DataFrame
    malformed: pd.DataFrame
    rejects: Rejects
    canon: pd.DataFrame
    unknown: np.ndarray
    fresh: np.ndarray | None
    position: np.ndarray
    candidates: np.ndarray
    table: pa.Table
    hashes: np.ndarray


@dataclass
class _Created:
    """Customers created so far: ids and earliest event time (naive UTC)."""

    ids: pa.Array = field(default_factory=lambda: pa.array([], pa.large_string()))
    signup: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[us]"))
    with_event: list[pa.Array] = field(default_factory=list)


class EventBlocks:
    """Validates blocks of events files and adds their candidates to a spill.

    Args:
        spill: Where candidate events go (with their verdict).
        config: The facts config.
        now: The import time.
        customers: Known customers (``customer_id``, ``signup_at``).
        stored_events: Returns the stored events sharing a ``(customer_id,
            occurred_at)`` pair with the keys it is given (given the rows' hashes and
            their table's schema too, it may leave out events no row can equal; see
            :meth:`features.store_files.StoredKeys.matching`).
        mapping: ``target -> source`` columns.
        event_type: Constant event type for files without that column.
        date_format: ``strptime`` format of ``occurred_at``.
        create: Create customers for unknown ids instead of quarantining their events.
        dedupe: How identical rows are treated (see ``validate_events``).
        erased: Marks erased customers' ids.

    Raises:
        FactFileError: ``event_type`` is not a declared event type.
    """

    def __init__(
        self,
        spill: EventSpill,
        *,
        config: FactsConfig,
        now: pd.Timestamp,
        customers: pd.DataFrame,
        stored_events: StoredRows | None,
        mapping: dict[str, str],
        event_type: str | None,
        date_format: str | None,
        create: bool,
        dedupe: Dedupe,
        erased: Callable[[pd.Series], np.ndarray] | None,
    ) -> None:
        if event_type is not None and event_type not in config.all_event_types:
            raise FactFileError(
                f"--event-type must be one of {list(config.all_event_types)} (declare more "
                f"under facts.event_types). Got {event_type!r} instead."
            )
        self.spill = spill
        self.config = config
        self.now = now
        self.stored_events = stored_events
        self.mapping = mapping
        self.event_type = event_type
        self.date_format = date_format
        self.create = create
        self.dedupe = dedupe
        self.erased = erased
        self.required = ["customer_id", "occurred_at"] + ([] if event_type else ["event_type"])
        self._known_ids = id_array(customers["customer_id"])
        self._known_signup = naive_utc(customers["signup_at"])
        # One connection for prepare() and one for commit(): they may run on two threads.
        self._con = duckdb.connect()
        self._commit_con = duckdb.connect()
        # Known ids are hashed once for every block (a join hashed them all again per
        # block: 150 ms of CPU at 1M customers); DuckDB's join where the index cannot be
        # exact (Arrow's index_in cost 0.5 s per block, as it hashes the value set per call).
        self._index = IdIndex.build(self._known_ids)
        if self._index is None:
            self._con.register(
                "known",
                pa.table(
                    {
                        "customer_id": self._known_ids,
                        "_pos": pa.array(np.arange(len(self._known_ids), dtype=np.int64)),
                    }
                ),
            )
        spill.use_known(self._known_ids)
        self._created = _Created()
        self._quarantines: list[pd.DataFrame] = []
        self._files: dict[str, FileCounts] = {}
        self._identical_kept = 0

    def add(self, raw: RawTable) -> None:
        """Validate one block (part of one file) and add its candidates to the spill."""
        self.commit(self.prepare(raw))

    def prepare(self, raw: RawTable) -> PreparedBlock:
        """The checks of one block that depend on no other block: field checks, known
        customers, events before signup, the candidates and their row hashes.

        Reads only what the constructor set, so it may run on another thread than
        :meth:`commit`, a block ahead (it has its own DuckDB connection).
        """
        frame, malformed = assemble(
            [raw], self.mapping, kind="events", targets=EVENT_COLUMNS, required=self.required
        )
        rejects = Rejects(len(frame))
        erased_ids(rejects, frame["customer_id"], self.erased)
        canon = event_fields(
            frame,
            rejects,
            config=self.config,
            now=self.now,
            event_type=self.event_type,
            date_format=self.date_format,
        )
        unknown, fresh, position = self._customers(canon, frame["customer_id"], rejects)
        candidates = np.flatnonzero(rejects.ok)
        table = _candidate_table(canon, rejects.ok, candidates)
        hashes = row_hashes(table, list(EVENT_COLUMNS), self._con)
        return PreparedBlock(
            raw=raw,
            frame=frame,
            malformed=malformed,
            rejects=rejects,
            canon=canon,
            unknown=unknown,
            fresh=fresh,
            position=position,
            candidates=candidates,
            table=table,
            hashes=hashes,
        )

    def commit(self, block: PreparedBlock) -> None:
        """The checks that depend on earlier blocks (customers created from events,
        duplicates of earlier rows), then the block's candidates to the spill. Blocks
        are committed in file order, one at a time."""
        canon, candidates, rejects = block.canon, block.candidates, block.rejects
        # Sorted once for the repeats in the block and for the spill's lookups (two sorts
        # of the same hashes cost 40 ms a block each); here, not in prepare(), which is
        # the longest of the three stages (the sort releases the GIL either way).
        ordered = sorted_hashes(block.hashes)
        if block.fresh is not None:
            self._add_created(canon.loc[block.fresh, ["customer_id", "occurred_at"]])
        kept = self._duplicates(canon, block.table, candidates, rejects, block.hashes, ordered)
        quarantine, files = finish(
            [block.raw], block.frame, rejects, block.malformed, kind="events"
        )
        self._quarantines.append(quarantine)
        self._count(files[0])
        ok = rejects.ok[candidates]
        self._identical_kept += int(kept[ok].sum())
        if self.create and block.unknown.any():
            accepted_unknown = block.unknown & rejects.ok
            self._created.with_event.append(
                pc.unique(id_array(canon["customer_id"][accepted_unknown]))
            )
        self.spill.add(
            block.table,
            ok,
            block.hashes,
            known_position=block.position[candidates],
            sorted_hashes=ordered,
        )

    def result(self) -> EventsTally:
        """The tally of every block.

        Raises:
            FactFileError: Every row of some file was rejected for a reason other than
                being a duplicate or an erased customer's.
        """
        quarantine = (
            pd.concat(self._quarantines, ignore_index=True) if self._quarantines else pd.DataFrame()
        )
        files = list(self._files.values())
        self._con.close()
        self._commit_con.close()
        refuse_all_rejected(files, quarantine)
        created = self._created
        made = pd.DataFrame(
            {
                "customer_id": pd.Series(created.ids.to_pandas(), dtype="string"),
                "signup_at": pd.Series(pd.DatetimeIndex(created.signup).tz_localize("UTC")).astype(
                    TIMESTAMP_DTYPE
                ),
            }
        )
        if len(made):
            # Only customers with at least one accepted event are created.
            seen = pa.concat_arrays(created.with_event) if created.with_event else created.ids[:0]
            has_event = pc.is_in(created.ids, value_set=seen).to_numpy(zero_copy_only=False)
            made = made[has_event].sort_values("customer_id", ignore_index=True)
        return EventsTally(
            quarantine, files, made, self._identical_kept, accepted=self.spill.accepted
        )

    def _count(self, counts: FileCounts) -> None:
        """Add a block's counts to its file's."""
        total = self._files.get(counts.source)
        if total is None:
            self._files[counts.source] = counts
            return
        total.rows_read += counts.rows_read
        total.accepted += counts.accepted
        merged = dict(total.quarantined)
        for reason, n in counts.quarantined.items():
            merged[reason] = merged.get(reason, 0) + n
        total.quarantined = dict(sorted(merged.items()))

    def _customers(
        self, canon: pd.DataFrame, ids: pd.Series, rejects: Rejects
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Mark unknown customers' events (unless they create customers) and events
        before signup. Returns the mask of rows whose customer is not among the known
        ones; when creating customers, the mask of rows that create them (``None`` if
        none does); and each row's position among the known customers (-1: none)."""
        position = self._known_position(id_array(canon["customer_id"]))
        matched = position >= 0
        unknown = ~matched
        fresh = None
        if self.create:
            fresh = rejects.ok & unknown
            if not fresh.any():
                fresh = None
        else:
            rejects.mark(
                rejects.ok & unknown,
                ReasonCode.UNKNOWN_CUSTOMER,
                lambda hit: (
                    "field 'customer_id': expected a known customer (import its customers "
                    "file first, or set facts.unknown_customer: create), got " + quoted(ids, hit)
                ),
            )
        # A created customer's signup is its earliest event: none of its events is before.
        signup_values = np.full(len(canon), np.datetime64("NaT"), dtype="datetime64[us]")
        signup_values[matched] = self._known_signup[position[matched]]
        mark_before_signup(canon, rejects, signup_values)
        return unknown, fresh, position

    def _known_position(self, ids: pa.Array) -> np.ndarray:
        """Per id, its position among the known customers (-1: unknown or missing)."""
        if self._index is not None:
            return self._index.positions(ids)
        rows = pa.array(np.arange(len(ids), dtype=np.int64))
        self._con.register("block_ids", pa.table({"customer_id": ids, "_row": rows}))
        found = self._con.execute(
            "SELECT b._row, k._pos FROM block_ids b JOIN known k USING (customer_id)"
        ).fetchnumpy()
        self._con.unregister("block_ids")
        position = np.full(len(ids), -1, dtype=np.int64)
        position[np.asarray(found["_row"], dtype=np.int64)] = np.asarray(found["_pos"])
        return position

    def _add_created(self, rows: pd.DataFrame) -> None:
        """Fold a block's events of unknown customers into the created customers."""
        first = rows.groupby("customer_id", sort=False, observed=True)["occurred_at"].min()
        ids = pa.concat_arrays([self._created.ids, id_array(first.index.to_series())])
        signup = np.concatenate([self._created.signup, naive_utc(first.reset_index(drop=True))])
        merged = (
            pd.DataFrame({"customer_id": ids.to_pandas(), "signup_at": signup})
            .groupby("customer_id", sort=False)["signup_at"]
            .min()
        )
        self._created.ids = id_array(merged.index.to_series())
        self._created.signup = merged.to_numpy(dtype="datetime64[us]")

    def _duplicates(
        self,
        canon: pd.DataFrame,
        table: pa.Table,
        candidates: np.ndarray,
        rejects: Rejects,
        hashes: np.ndarray,
        ordered: np.ndarray,
    ) -> np.ndarray:
        """Mark exact duplicates of an earlier row of the import or of a stored event.

        Only rows that can be duplicates are compared value by value: those whose row
        hash repeats in the block, appears in an earlier block or belongs to a stored
        event with the same customer and time. Every copy of a value has the same hash,
        so each such row is compared with all its copies and ranks as it would in a
        whole-file run.

        Returns:
            Per candidate row, whether it repeats an earlier row and is kept as separate.
        """
        n_rows = len(candidates)
        maybe = _repeated(hashes, ordered)
        # The hashes in order: the spill's filter then reads its words in order (13 ms
        # a block instead of 30 for the same answer).
        earlier = self.spill.earlier(ordered)
        if earlier is not None:
            maybe |= _among(
                hashes,
                row_hashes(earlier.cast(table.schema), list(EVENT_COLUMNS), self._commit_con),
            )
        stored = None
        if self.stored_events is not None and n_rows:
            keys = table.select(["customer_id", "occurred_at"])
            stored = self.stored_events(keys, hashes, table.schema)
            if stored is not None and stored.num_rows:
                aligned = stored.select(list(EVENT_COLUMNS)).cast(table.schema)
                maybe |= _among(hashes, row_hashes(aligned, list(EVENT_COLUMNS), self._commit_con))
            else:
                stored = None
        repeats = np.zeros(n_rows, dtype=bool)
        in_store = np.zeros(n_rows, dtype=bool)
        kept = np.zeros(n_rows, dtype=bool)
        which = np.flatnonzero(maybe)
        if len(which):
            prior = (
                earlier.to_pandas().astype(EVENT_DTYPES)[list(EVENT_COLUMNS)]
                if earlier is not None
                else canon.iloc[:0]
            )
            both = pd.concat([prior, canon.iloc[candidates[which]]], ignore_index=True)
            keep = both["order_id"].isna().to_numpy() if self.dedupe == "auto" else None
            found = repeat_rows(both, EVENT_COLUMNS, stored, keep_repeats=keep)
            skip = len(prior)
            repeats[which], in_store[which], kept[which] = (f[skip:] for f in found)
        n = len(rejects.ok)
        within = np.zeros(n, dtype=bool)
        within[candidates] = repeats
        rejects.mark(
            within,
            ReasonCode.DUPLICATE,
            lambda hit: np.full(int(hit.sum()), "exact duplicate of an earlier row in this import"),
        )
        stored_dup = np.zeros(n, dtype=bool)
        stored_dup[candidates] = in_store
        rejects.mark(
            stored_dup,
            ReasonCode.DUPLICATE,
            lambda hit: np.full(int(hit.sum()), "exact duplicate of an event already stored"),
        )
        return kept


def _candidate_table(canon: pd.DataFrame, ok: np.ndarray, candidates: np.ndarray) -> pa.Table:
    """The candidate rows of a block's canonical events as Arrow, checked as
    :func:`~features.schema.check_events` checks a frame: the whole block converted,
    then filtered (an Arrow filter costs a third of pandas' take of eight columns)."""
    check_events(canon.iloc[:0])  # columns and dtypes
    check_amounts(pd.Series(canon["amount"].to_numpy()[candidates]))
    whole = arrow_table(canon)
    return whole if len(candidates) == len(canon) else filter_rows(whole, pa.array(ok))


def _repeated(hashes: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Where a hash occurs more than once (``ordered``: the hashes sorted)."""
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(twice):
        return np.zeros(len(hashes), dtype=bool)
    return _among(hashes, twice)


def _among(hashes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where ``hashes`` holds one of ``values``."""
    if not len(values):
        return np.zeros(len(hashes), dtype=bool)
    hit = pc.is_in(pa.array(hashes, pa.uint64()), value_set=pa.array(values, pa.uint64()))
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
