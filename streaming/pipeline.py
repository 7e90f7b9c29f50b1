"""The two stages of real-time tagging and what passes between them.

:class:`streaming.tagger.LiveTagger` applies micro-batches in two ordered stages, each
under its own lock, so the second core is not idle while a micro-batch is tagged:

1. **store** (the tagger's ingest lock): take the queued batches (:class:`Request`),
   validate them, append the accepted events durably as one live segment, add them to
   the tagger's index, and cut the touched customers' stored rows and events out of it
   (Arrow). The result is a :class:`Staged`: everything stage 2 needs, so stage 2
   touches neither the index nor the live event log;
2. **tag** (the tagger's tag lock): the re-tag over those arrays, the live write (tag
   store, transitions), the listeners, each caller's result.

A thread that finished stage 1 of micro-batch N takes the tag lock before it lets go of
the ingest lock (hand over hand): micro-batches enter stage 2 in the order they were
stored, so a customer's live values follow its events in order, while stage 1 of
micro-batch N + 1 runs beside stage 2 of micro-batch N. What overlaps is what either
stage spends outside the GIL (DuckDB's queries and writes, Arrow, numpy's kernels).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from features.live import Appended
from streaming.checking import Checked
from streaming.errors import Busy
from streaming.results import ApplyResult
from tags.errors import TagStoreError
from tags.live import LiveGrid

__all__ = [
    "Request",
    "Staged",
    "Waiting",
    "append_quarantine",
    "notify",
    "touched",
    "written_rows",
]

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One caller's batch, queued until a lock holder applies it (with others).

    Attributes:
        records: The decoded event records.
        source: Where they came from (``POST /events``, a NATS subject).
        result: Set once the batch is durable and tagged.
        error: Set instead when it failed.
        done: True once ``result`` or ``error`` is set.
        taken: True once a thread took it into a micro-batch (its own thread then
            waits for ``finished`` instead of applying it).
        finished: Set with ``done``.
    """

    records: list[Any]
    source: str
    result: ApplyResult | None = None
    error: BaseException | None = None
    done: bool = False
    taken: bool = False
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def settle(
        self, *, result: ApplyResult | None = None, error: BaseException | None = None
    ) -> None:
        """Give the caller its result or error and wake it."""
        self.result, self.error, self.done = result, error, True
        self.finished.set()


class Waiting:
    """The callers' batches in order of arrival, bounded (back-pressure).

    A batch counts from :meth:`add` until its caller is answered (:meth:`leave`), also
    while it is being stored or tagged.

    Args:
        max_waiting: Batches allowed at once; beyond that :meth:`add` raises
            :class:`Busy` (the service answers 429).
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._items: deque[Request] = deque()
        self._count = 0

    def __len__(self) -> int:
        """Batches queued, not yet taken into a micro-batch."""
        return len(self._items)

    def add(self, records: list[Any], source: str) -> Request:
        """Queue a batch behind those before it.

        Raises:
            Busy: ``max_waiting`` batches are waiting already.
        """
        request = Request(records, source)
        with self._lock:
            if self._count >= self.max_waiting:
                raise Busy(
                    f"Expected at most {self.max_waiting} batches waiting to be tagged. "
                    "Got more: ingestion outruns tagging; retry shortly.",
                    retry_after_s=1.0,
                )
            self._count += 1
            self._items.append(request)
        return request

    def take(self, limit: int) -> list[Request]:
        """The queued batches applied together: oldest first, at most ``limit`` events
        in all (at least one batch), marked taken."""
        with self._lock:
            group = [self._items.popleft()]
            total = len(group[0].records)
            while self._items and total + len(self._items[0].records) <= limit:
                total += len(self._items[0].records)
                group.append(self._items.popleft())
            for request in group:
                request.taken = True
        return group

    def leave(self, request: Request) -> None:
        """``request``'s caller got its answer: room for another batch."""
        with self._lock:
            self._count -= 1


@dataclass
class Staged:
    """A micro-batch after stage 1 (stored durably), what stage 2 tags.

    Attributes:
        checked: The group's validated batches, in queue order.
        now: The micro-batch's instant.
        started: ``time.perf_counter()`` when the micro-batch started.
        appended: The durable append (its segment, which rows were stored).
        customers: Known customers the micro-batch touched, in order, no repeats.
        own: Of those, each batch's own (one list per batch of ``checked``).
        customer_rows: Their stored rows (Arrow, ``CustomerFacts.customer_table``).
        event_rows: Their stored events, one table per index block.
        thresholds: The batch run's population thresholds to re-tag with.
        thresholds_run: That run's id.
    """

    checked: list[Checked]
    now: pd.Timestamp
    started: float
    appended: Appended
    customers: list[str]
    own: list[list[str]]
    customer_rows: pa.Table | None
    event_rows: list[pa.Table]
    thresholds: dict[str, dict[str, float | None]]
    thresholds_run: str | None

    @property
    def segments(self) -> list[str]:
        """The live segment the stage-2 write marks tagged (none if nothing was new)."""
        return [self.appended.segment.name] if self.appended.segment is not None else []


def written_rows(
    grid: LiveGrid, *, at: pd.Timestamp, seq: int, table: pa.Table | None = None
) -> pd.DataFrame:
    """The live rows as stored: every (customer, evaluated tag), NA where none applies.

    Args:
        grid: The grid written.
        at: Time of the write.
        seq: The write's sequence number.
        table: The rows as appended (``LiveWrite.table``, :meth:`LiveGrid.table`): its
            text columns are taken as they are instead of converting the grid's object
            arrays a second time (one string conversion per entry, customers x tags).
    """
    width = len(grid.tags)

    def text(values: Any) -> pd.arrays.ArrowStringArray:
        return pd.arrays.ArrowStringArray(pa.array(values, pa.large_string()))

    if table is not None:
        if table.num_rows != len(grid.value):
            raise TagStoreError(
                f"Expected the {len(grid.value)} rows of the grid written. Got {table.num_rows}."
            )

        def stored(name: str) -> pd.arrays.ArrowStringArray:
            return pd.arrays.ArrowStringArray(table[name].cast(pa.large_string()))

        texts = {name: stored(name) for name in _TEXT_COLUMNS}
    else:
        texts = {
            "customer_id": text(np.repeat(np.asarray(grid.customers, dtype=object), width)),
            "tag_id": text(np.tile(np.asarray(grid.tags, dtype=object), len(grid.customers))),
            "value": text(grid.value),
            "source": text(grid.source),
            "version": text(grid.version),
        }
    return pd.DataFrame(
        {
            "customer_id": texts["customer_id"],
            "tag_id": texts["tag_id"],
            "value": texts["value"],
            "score": grid.score,
            "source": texts["source"],
            "version": texts["version"],
            "as_of": pd.DatetimeIndex(grid.as_of).tz_localize("UTC"),
            "updated_at": at,
            "seq": seq,
        }
    )


def touched(
    known: Callable[[list[str]], list[str]],
    checked: Sequence[Checked],
    ids: list[str],
    written: list[bool],
) -> tuple[list[str], list[list[str]]]:
    """The stored customers a micro-batch touched, and those each of its batches did.

    Args:
        known: Of some ids, the stored customers' (in order, without repeats).
        checked: Its batches, validated (their accepted rows' ``ids``, ``repeats``).
        ids: The customer id of each accepted row, batch after batch: one list for
            the micro-batch, not a pandas iteration per batch.
        written: Per accepted row, whether it was stored now.

    Returns:
        The customers (accepted events stored now, or event-id repeats), and per batch
        its own.
    """

    def repeated(batches: Sequence[Checked]) -> list[str]:
        return [str(r.get("customer_id")) for c in batches for r in c.repeats]

    customers = known(list(compress(ids, written)) + repeated(checked))
    if len(checked) == 1:
        return customers, [customers]
    own, offset = [], 0
    for c in checked:
        end = offset + len(c.ids)
        own.append(known(list(compress(ids[offset:end], written[offset:end])) + repeated([c])))
        offset = end
    return customers, own


def notify(listeners: Sequence[Callable[[pd.DataFrame], None]], written: pd.DataFrame) -> None:
    """Hand a committed live write's rows to each listener; one failing stops no other."""
    for listener in listeners:
        try:
            listener(written)
        except Exception:  # committed: a reader's failure must not undo it
            log.warning("A live-write listener failed", exc_info=True)


_TEXT_COLUMNS = ("customer_id", "tag_id", "value", "source", "version")


def append_quarantine(folder: Path, rejected: pd.DataFrame, now: pd.Timestamp) -> Path | None:
    """Append rejected rows to the day's live quarantine file (header once)."""
    if not len(rejected):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"live-{now:%Y%m%d}.csv"
    sink = pa.BufferOutputStream()
    options = pcsv.WriteOptions(include_header=not path.exists())
    pcsv.write_csv(pa.Table.from_pandas(rejected, preserve_index=False), sink, options)
    with path.open("ab") as handle:
        handle.write(bytes(sink.getvalue()))
    return path
