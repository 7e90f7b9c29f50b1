"""Audit entries written off the request path, in order, by one writer thread.

The audit log is hash-chained, so entries must be appended one at a time and in order;
doing it on the request path would put a file write (and the chain's lock) inside every
request's latency. Requests enqueue their entry (microseconds); one daemon thread
appends them, everything waiting at once in one ``append_many`` when the writer has it:
an append costs a lock, a tail read, an fsync and two small file replacements (about
1.2 ms of CPU, measured), so under load one batch per wake-up keeps the writer from
costing more CPU than the request it records. Without a pause, though, a writer that
keeps up finds one entry per wake-up (concurrency 8 left one or two): so after taking an
entry it waits up to :data:`LINGER_S` for the entries of the requests in flight and
writes them together (a group commit). An entry reaches the file at most that much
later; the request never waits for it either way. :meth:`QueuedAudit.flush` cuts the
pause short and waits until everything queued is written (tests, shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tags.errors import AuditError

__all__ = ["AuditWriter", "QueuedAudit"]

log = logging.getLogger(__name__)


# Entries written per ``append_many`` call at most (bounds one lock hold of the log).
MAX_BATCH = 512
# Seconds the writer waits after an entry for more to join its batch: at 150 requests/s
# ~8 entries per write instead of 1-2, i.e. ~0.26 ms of CPU per entry instead of ~1.5 ms
# (one append_many of 1 / 8 / 16 entries of a 100-customer /tags request, measured).
LINGER_S = 0.05


class AuditWriter(Protocol):
    """What :class:`tags.audit.AuditLog` offers: ``append`` with keyword fields.

    A writer may also offer ``append_many(entries)`` (a sequence of such keyword
    mappings, written in order under one lock); :class:`QueuedAudit` then uses it.
    """

    def append(self, **entry: Any) -> Any:
        """Append one entry."""
        ...


class QueuedAudit:
    """An :class:`serving.runtime.AuditSink` that writes through a background thread.

    Args:
        writer: The audit log to append to.
        max_queue: Entries that may wait; when full, requests wait for room instead
            of dropping entries (every request is audited).
        linger_s: Seconds to wait after an entry for others to join its write (0:
            write whatever is waiting at once).
    """

    def __init__(
        self, writer: AuditWriter, *, max_queue: int = 100_000, linger_s: float = LINGER_S
    ) -> None:
        if linger_s < 0:
            raise ValueError(f"Expected linger_s >= 0. Got {linger_s}.")
        self.writer = writer
        self.linger_s = linger_s
        # Set by flush() and close(): whoever waits for the writer ends its pause.
        self._hurry = threading.Event()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="tagsmith-audit", daemon=True)
        self._thread.start()
        self.failures = 0
        self._said: set[str] = set()  # the AuditError messages logged already

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        tags: Sequence[str],
        n_customers: int,
        query: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> None:
        """Queue one entry for writing."""
        self._queue.put(
            {
                "actor": actor,
                "role": role,
                "action": action,
                "tags": list(tags),
                "n_customers": n_customers,
                "query": dict(query),
                "extra": dict(extra),
            }
        )

    def _run(self) -> None:
        append_many = getattr(self.writer, "append_many", None)
        while True:
            batch = [self._queue.get()]
            if batch[-1] is not None and self.linger_s > 0 and self._queue.empty():
                # One wait per batch, not one wake-up per arriving entry.
                self._hurry.wait(self.linger_s)
            # Whatever else is waiting joins this write (in queue order).
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            entries = [e for e in batch if e is not None]
            try:
                self._write(entries, append_many)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, entries: list[dict[str, Any]], append_many: Any) -> None:
        if not entries:
            return
        if callable(append_many) and len(entries) > 1:
            try:
                append_many(entries)
                return
            except (TypeError, ValueError):
                # An entry that does not serialise fails the batch before anything is
                # written: write the others one by one, so only that entry is lost.
                pass
            except Exception as exc:  # the log could not be written: count the whole batch
                self._failed(len(entries), exc)
                return
        for entry in entries:
            try:
                self.writer.append(**entry)
            except Exception as exc:  # keep auditing later requests; the failure is logged
                self._failed(1, exc)

    def _failed(self, n: int, exc: Exception) -> None:
        """Count ``n`` entries lost and say why (called in the ``except`` block).

        The log's own refusals (:class:`~tags.errors.AuditError`: a log shorter than its
        checkpoint, a lock held too long) already say what was expected and what was
        found: one line, once per message, instead of a stack for every batch (every
        50 ms under load). Anything else is logged with its stack.
        """
        self.failures += n
        if not isinstance(exc, AuditError):
            log.exception("Writing %d audit entries failed", n)
        elif str(exc) not in self._said:
            self._said.add(str(exc))
            log.error("Audit entries are not being written (%d lost): %s", self.failures, exc)

    def flush(self) -> None:
        """Block until every queued entry is written (the writer stops pausing)."""
        self._hurry.set()
        try:
            self._queue.join()
        finally:
            self._hurry.clear()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread.is_alive():
            self._hurry.set()
            self._queue.put(None)
            self._thread.join(timeout=30)
