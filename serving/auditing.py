"""Audit entries written off the request path, in order, by one writer thread.

The audit log is hash-chained, so entries must be appended one at a time and in order;
doing it on the request path would put a file write (and the chain's lock) inside every
request's latency. Requests enqueue their entry (microseconds); one daemon thread
appends them. :meth:`QueuedAudit.flush` waits until everything queued is written (tests,
shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["AuditWriter", "QueuedAudit"]

log = logging.getLogger(__name__)


class AuditWriter(Protocol):
    """What :class:`tags.audit.AuditLog` offers: ``append`` with keyword fields."""

    def append(self, **entry: Any) -> Any:
        """Append one entry."""
        ...


class QueuedAudit:
    """An :class:`serving.runtime.AuditSink` that writes through a background thread.

    Args:
        writer: The audit log to append to.
        max_queue: Entries that may wait; when full, requests wait for room instead
            of dropping entries (every request is audited).
    """

    def __init__(self, writer: AuditWriter, *, max_queue: int = 100_000) -> None:
        self.writer = writer
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="tagsmith-audit", daemon=True)
        self._thread.start()
        self.failures = 0

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
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    return
                self.writer.append(**entry)
            except Exception:  # keep auditing later requests; the failure is logged
                self.failures += 1
                log.exception("Writing an audit entry failed")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Block until every queued entry is written."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
