"""One process's connections to a tag store file, taken in turn: readers together, a
writer alone.

DuckDB refuses a read-only and a read-write connection to the same file in one process
at the same time, as it refuses another process's. :class:`tags.store.TagStore` retries
such refusals with growing pauses (20 ms up to 0.5 s), which is right for another
process, whose connections it cannot see; between the threads of one process (the
service's live-value poll and real-time tagging's writes) the pauses overshot: profiled
on a 200k-customer project, 14 retries slept 3.7 s during a 5 s run of 50 events/s. Here
a thread waits exactly until the other mode's connections of this process are closed.

A writer waiting keeps new readers out (a reader polling every 0.2 s never starves the
tagger). A thread already holding a connection to the file opens another without waiting
(DuckDB decides, as before), so nested use cannot deadlock here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FileTurns", "turns_of"]

_REGISTRY: dict[str, FileTurns] = {}
_REGISTRY_LOCK = threading.Lock()


class FileTurns:
    """A readers-writer lock for one file, within one process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(self, *, write: bool, timeout_s: float) -> Iterator[bool]:
        """Hold the file for reading or writing; yields False when the turn did not come
        within ``timeout_s`` (the caller then tries anyway, as without this lock)."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield True
            finally:
                self._local.depth = depth
            return
        got = self._acquire(write, time.monotonic() + timeout_s)
        self._local.depth = 1
        try:
            yield got
        finally:
            self._local.depth = 0
            if got:
                with self._cond:
                    if write:
                        self._writer = False
                    else:
                        self._readers -= 1
                    self._cond.notify_all()

    def _acquire(self, write: bool, deadline: float) -> bool:
        with self._cond:
            if write:
                self._writers_waiting += 1
                try:
                    while self._writer or self._readers:
                        if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                            return False
                finally:
                    self._writers_waiting -= 1
                self._writer = True
                return True
            while self._writer or self._writers_waiting:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    return False
            self._readers += 1
            return True


def turns_of(path: Path) -> FileTurns:
    """The process-wide lock of the file at ``path``."""
    key = str(Path(path).resolve())
    with _REGISTRY_LOCK:
        turns = _REGISTRY.get(key)
        if turns is None:
            turns = _REGISTRY[key] = FileTurns()
        return turns
