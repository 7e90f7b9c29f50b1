"""Two-stage pipelines for an import: one stage on a worker thread, the other on the caller's.

An import reads and splits a block of text, validates it, and at the commit sorts and
writes one customer range at a time. Each stage alone keeps one core busy at most
(Arrow's CSV parser, numpy's sorts and the Parquet writer's zstd release the GIL, the
Python glue between them does not), so on a two-core machine the import ran at about
1.1 cores. Overlapping stage N+1 with stage N lets the GIL-free parts of one run while
the other holds the interpreter.

* :func:`ahead` runs an iterator on a worker thread, at most ``depth`` items ahead of
  the consumer: the next block is read while this one is validated, the next range is
  read from the spill and sorted while this one is written. :class:`Ahead` does the
  same from its construction on, before the consumer asks for an item.
* :class:`Behind` runs a function on the items given to it on a worker thread, one at a
  time and in order: a range is written while the next one is sorted.

Neither changes what is computed, only when: items arrive in the same order, and an
exception raised on the worker is raised again on the caller's thread, at the item it
belongs to (for :func:`ahead`) or at the next call (for :class:`Behind`). Memory grows
by at most ``depth`` items for :func:`ahead` and one for :class:`Behind` (the item being
processed while the caller prepares the next).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Generic, TypeVar

__all__ = ["Ahead", "Behind", "ahead"]

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1


class _Failed:
    """An exception raised on the worker, carried to the caller."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def ahead(
    items: Iterator[T], depth: int = 1, *, name: str = "tagsmith-ahead"
) -> Generator[T, None, None]:
    """The items of ``items`` in order, produced on a worker thread up to ``depth`` ahead.

    The worker starts at the first item asked for (:class:`Ahead` starts at once). It
    stops, and the source iterator is closed on it, when the consumer stops early (an
    exception while handling an item, or the generator closed).

    Args:
        items: The source; advanced only on the worker thread (closed there too).
        depth: Items produced ahead of the one being consumed (at least 1).
        name: The worker thread's name.

    Raises:
        ValueError: ``depth`` is below 1.
        Exception: Whatever the source raised, at the item it failed on.
    """
    with Ahead(items, depth, name=name) as started:
        yield from started


class Ahead(Generic[T]):
    """:func:`ahead`'s look-ahead, its worker started on construction: the items of
    ``items`` in order, produced on a worker thread up to ``depth`` ahead of the one
    being consumed. An import starts reading and splitting its events file this way
    while it still checks the customers file, which the events' checks need first.

    :meth:`close` (or leaving it as a context manager) stops the worker, closes the
    source on it and waits for it, whether or not every item was taken; use it so.

    Args:
        items: The source; advanced only on the worker thread (closed there too).
        depth: Items produced ahead of the one being consumed (at least 1).
        name: The worker thread's name.

    Raises:
        ValueError: ``depth`` is below 1.
    """

    def __init__(self, items: Iterator[T], depth: int = 1, *, name: str = "tagsmith-ahead") -> None:
        if depth < 1:
            raise ValueError(f"depth: expected at least 1. Got {depth}.")
        self._items = items
        # A slot is taken before an item is produced and given back when the consumer
        # takes it: at most ``depth`` items exist beside the one being consumed (a
        # bounded queue alone would let the producer hold one more, waiting to be put).
        self._slots = threading.Semaphore(depth)
        self._handoff: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = False
        self._worker = threading.Thread(target=self._produce, name=name, daemon=True)
        self._worker.start()

    def _wait_for_slot(self) -> bool:
        """Wait until an item may be produced; ``False`` when the consumer has stopped."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=_POLL_SECONDS):
                return not self._stop.is_set()
        return False

    def _produce(self) -> None:
        items = self._items
        try:
            while self._wait_for_slot():
                try:
                    item = next(items)
                except StopIteration:
                    break
                self._handoff.put(item)
                del item
        except BaseException as exc:  # carried to the consumer, raised there
            self._handoff.put(_Failed(exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        self._handoff.put(_DONE)

    def __iter__(self) -> Ahead[T]:
        return self

    def __next__(self) -> T:
        """The next item, once the worker has it.

        Raises:
            StopIteration: The source is exhausted (or the worker was stopped).
            Exception: Whatever the source raised, at the item it failed on.
        """
        if self._done:
            raise StopIteration
        item = self._handoff.get()
        self._slots.release()
        if item is _DONE:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.error
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the worker (the source is closed on it) and wait for it."""
        self._stop.set()
        self._worker.join()

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Behind(Generic[T]):
    """Runs ``work`` on each item :meth:`put` on a worker thread, in order, one at a time.

    :meth:`put` waits until the worker is done with the item before (so the caller
    holds at most one item beside the one being processed); :meth:`finish` waits for
    every item. An exception
    raised by ``work`` stops the worker and is raised again by the next :meth:`put` or
    by :meth:`finish`. Use as a context manager: leaving it without :meth:`finish`
    (an exception on the caller's side) drops the items not started and waits for the
    one being processed, so nothing runs on after the caller has given up.

    Args:
        work: What to do with each item.
        name: The worker thread's name.
    """

    def __init__(self, work: Callable[[T], object], *, name: str = "tagsmith-behind") -> None:
        self._work = work
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Taken by put(), given back when the worker is done with the item: the caller
        # prepares the next item while this one is processed, never two ahead.
        self._idle = threading.Semaphore(1)
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            try:
                if self._error is None and not self._cancelled.is_set():
                    self._work(item)  # type: ignore[arg-type]
            except BaseException as exc:  # raised on the caller's thread
                self._error = exc
            finally:
                del item
                self._idle.release()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Hand ``item`` to the worker once it is done with the one before.

        Raises:
            Exception: What ``work`` raised on an earlier item.
        """
        self._idle.acquire()
        try:
            self._raise()
        except BaseException:
            self._idle.release()
            raise
        self._queue.put(item)

    def finish(self) -> None:
        """Wait until every item is done.

        Raises:
            Exception: What ``work`` raised, if it did.
        """
        self._stop()
        self._raise()

    def _stop(self) -> None:
        if self._worker.is_alive():
            self._queue.put(_DONE)
            self._worker.join()

    def __enter__(self) -> Behind[T]:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self._cancelled.set()
        self._stop()
