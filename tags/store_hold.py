"""Opening a tag store file, and one writing connection a process keeps open between
live writes.

Opening the tag store for writing costs ~30 ms of CPU at 1M customers (a 136 MB file:
DuckDB reads its metadata, the schema statements run) and closing it checkpoints the
write-ahead log into the file; real-time tagging paid both on every micro-batch.
:class:`HeldWriter` keeps one writing connection open instead: every connection this
process asks for meanwhile, to read or to write, is a cursor of it (DuckDB refuses a
read-only connection beside a writing one in one process; a cursor shares the open
database and sees every committed write). A commit is durable in the write-ahead log
as before, so a process killed while holding loses nothing (the next open replays it).

The connection is closed (and so checkpointed) by a background thread once it was idle
for ``idle_s`` or open for ``max_s``: other processes (a batch ``tags run``, another
consumer, a service reading what a separate consumer wrote) find the file free again
within that bound, and the write-ahead log never grows past ``max_s`` of writes.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from features.crypto import EncryptionKeys
from tags.errors import TagStoreError
from tags.live import LIVE_SCHEMA
from tags.store_crypto import attach_encrypted
from tags.store_format import SCHEMA, SCHEMA_VERSION, is_busy, open_failure
from tags.store_locks import turns_of
from tags.transitions import TRANSITIONS_SCHEMA

__all__ = [
    "HeldWriter",
    "batch_in_progress",
    "busy",
    "cursor_if_held",
    "held_of",
    "held_writer",
    "open_store",
    "release",
    "release_all",
]

_HELD: dict[str, HeldWriter] = {}
_HELD_LOCK = threading.Lock()


def open_store(
    path: Path, keys: EncryptionKeys | None, *, write: bool, busy_timeout_s: float
) -> duckdb.DuckDBPyConnection:
    """A connection to the store at ``path`` (schema created when writing), retrying
    while another process holds the file, up to ``busy_timeout_s``.

    Raises:
        TagStoreError: Busy for too long, read-only, damaged, or encrypted without a key.
    """
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.02
    while True:
        try:
            con = _open(path, keys, write=write)
            break
        # Only a lock (another process's, or this one's in the other mode) is worth
        # waiting for; a damaged file or read-only folder is named (finding 14-7).
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise TagStoreError(open_failure(path, exc)) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if write:
        try:
            con.execute(SCHEMA)
            con.execute(TRANSITIONS_SCHEMA)
            con.execute(LIVE_SCHEMA)
            con.execute(
                "INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
            )
        except BaseException:
            con.close()
            raise
    return con


def _open(path: Path, keys: EncryptionKeys | None, *, write: bool) -> duckdb.DuckDBPyConnection:
    if keys is None:
        try:
            return duckdb.connect(str(path), read_only=not write)
        except duckdb.CatalogException as exc:
            raise TagStoreError(
                f"The tag store {path} is encrypted. Expected the project's encryption "
                "key (TAGSMITH_ENCRYPTION_KEY or governance.encryption.key_file). Got no key."
            ) from exc
    return attach_encrypted(path, keys, write=write)


class HeldWriter:
    """A writing connection to one store file, kept open between uses by this process.

    Callers take the file's turn (:func:`tags.store_locks.turns_of`) around :meth:`use`;
    the closing thread takes the writer's turn, so it never closes a connection in use.
    While :meth:`busy` (a micro-batch between its writes: validating, re-tagging) the
    connection is not closed for idling; it is closed once not busy and idle for
    ``idle_s``, or once open for ``max_s``, busy or not (at the next moment no cursor
    is in use; a busy micro-batch then opens it again at its write), so a steady
    stream of micro-batches still checkpoints and lets other processes in every
    ``max_s``.

    Args:
        path: The store file.
        idle_s: Close after this long neither used nor busy.
        max_s: Close after this long open (bounds the write-ahead log and how long
            other processes wait for the file).
        cursor_sql: Run on every cursor first (``USE`` of an attached, encrypted file:
            a cursor starts in the connection's default catalogue).
    """

    def __init__(self, path: Path, *, idle_s: float, max_s: float, cursor_sql: str = "") -> None:
        self.path = path
        self.idle_s = idle_s
        self.max_s = max_s
        self.cursor_sql = cursor_sql
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0
        self._used = 0.0
        self._busy = 0
        self._wrote = 0.0
        self._stopping = False
        self._cond = threading.Condition()
        self._closer: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is open now."""
        return self._con is not None

    @property
    def batch_in_progress(self) -> bool:
        """Whether a micro-batch is inside :meth:`busy` (its write opens the connection)."""
        return self._busy > 0

    def adopt(self, con: duckdb.DuckDBPyConnection) -> None:
        """Hold ``con`` (a fresh writing connection; the caller holds the file's turn)."""
        with self._cond:
            self._con = con
            self._opened = self._used = time.monotonic()
            self._stopping = False
        self._closer = threading.Thread(
            target=self._close_when_due, name="tagsmith-tag-store-close", daemon=True
        )
        self._closer.start()

    def use(self, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a cursor of the held connection (the caller holds the file's turn);
        ``write``: a micro-batch's write (the moment a due close waits for)."""
        con = self._con
        if con is None:  # pragma: no cover - callers check is_open under the turn
            raise RuntimeError("The tag store connection is not held.")
        cursor = con.cursor()
        try:
            if self.cursor_sql:
                cursor.execute(self.cursor_sql)
            yield cursor
        finally:
            cursor.close()
            self._used = time.monotonic()
            if write:
                with self._cond:
                    self._wrote = self._used
                    self._cond.notify_all()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Keep the connection open while inside (nested and concurrent uses count)."""
        with self._cond:
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._used = time.monotonic()
                self._cond.notify_all()

    def close(self, timeout_s: float = 60.0) -> None:
        """Close now (waits for the file's turn), and stop the closing thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        closer = self._closer
        if closer is not None and closer is not threading.current_thread():
            closer.join(timeout=timeout_s)
        with turns_of(self.path).hold(write=True, timeout_s=timeout_s):
            self._close()

    def _wait_until_due(self) -> bool:
        """Block until the connection is due to close (True) or closing stops (False)."""
        with self._cond:
            while not self._stopping and self._con is not None:
                at = time.monotonic()
                due = self._opened + self.max_s
                if at >= due:
                    # Under a steady stream, right after a micro-batch's write: the close
                    # (its checkpoint, 0.1-0.5 s at 5,000 events/s) then overlaps the next
                    # micro-batch's re-tag instead of landing on its write. Waited for at
                    # most half of max_s past due.
                    late = due + self.max_s / 2
                    if not self._busy or self._wrote >= due or at >= late:
                        return True
                    self._cond.wait(late - at)
                    continue
                if self._busy:
                    self._cond.wait(self._opened + self.max_s - at)
                    continue
                left = min(self._used + self.idle_s, self._opened + self.max_s) - at
                if left <= 0:
                    return True
                self._cond.wait(left)
        return False

    def _close_when_due(self) -> None:
        while self._wait_until_due():
            with turns_of(self.path).hold(write=True, timeout_s=self.max_s) as got:
                # Re-checked under the turn: the connection may have been used meanwhile.
                with self._cond:
                    at = time.monotonic()
                    due = at - self._opened >= self.max_s or (
                        not self._busy and at - self._used >= self.idle_s
                    )
                if got and due:
                    self._close()
                    return

    def _close(self) -> None:
        with self._cond:
            con, self._con = self._con, None
            self._cond.notify_all()
        if con is not None:
            # The last connection to the database: DuckDB checkpoints the log here.
            con.close()


def _entry(path: Path, idle_s: float, max_s: float, cursor_sql: str) -> HeldWriter:
    key = str(Path(path).resolve())
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is None:
            held = _HELD[key] = HeldWriter(
                Path(key), idle_s=idle_s, max_s=max_s, cursor_sql=cursor_sql
            )
        return held


@contextlib.contextmanager
def cursor_if_held(path: Path, *, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A cursor of this process's held writing connection to ``path`` when one is open
    at the reader's turn, else None (nothing opened: a reader that opened the file here
    would hold up the write that opens it next).

    Raises:
        TagStoreError: The reader's turn did not come within ``timeout_s``.
    """
    with turns_of(path).hold(write=False, timeout_s=timeout_s) as got:
        if not got:
            raise TagStoreError(
                f"Expected a turn to read the tag store {path} within {timeout_s:.0f} s. "
                "Got it written by this process all that time."
            )
        held = held_of(path)
        if held is None:
            yield None
            return
        yield from held.use()


def batch_in_progress(path: Path) -> bool:
    """Whether a micro-batch of this process is between its writes to ``path``
    (:func:`busy`): its write opens the held connection soon, if it is not open now."""
    with _HELD_LOCK:
        held = _HELD.get(str(Path(path).resolve()))
    return held is not None and held.batch_in_progress


def held_of(path: Path) -> HeldWriter | None:
    """This process's held connection to ``path`` when one is open now."""
    with _HELD_LOCK:
        held = _HELD.get(str(Path(path).resolve()))
    return held if held is not None and held.is_open else None


@contextlib.contextmanager
def held_writer(
    path: Path,
    opener: Callable[[], duckdb.DuckDBPyConnection],
    *,
    idle_s: float,
    max_s: float,
    busy_timeout_s: float,
    cursor_sql: str = "",
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of this process's held writing connection to ``path``, opened with
    ``opener`` when none is open."""
    held = _entry(path, idle_s, max_s, cursor_sql)
    with turns_of(path).hold(write=True, timeout_s=busy_timeout_s):
        if not held.is_open:
            held.idle_s, held.max_s, held.cursor_sql = idle_s, max_s, cursor_sql
            held.adopt(opener())
        yield from held.use(write=True)


def busy(path: Path, *, idle_s: float, max_s: float) -> contextlib.AbstractContextManager[None]:
    """While inside, this process's held connection to ``path`` (one opened meanwhile
    too) is not closed for being idle."""
    return _entry(path, idle_s, max_s, "").busy()


def release(path: Path, timeout_s: float = 60.0) -> None:
    """Close this process's held connection to ``path``, if any (checkpoints it)."""
    with _HELD_LOCK:
        held = _HELD.get(str(Path(path).resolve()))
    if held is not None:
        held.close(timeout_s)


def release_all() -> None:
    """Close every held connection (at exit: a closing thread still inside DuckDB while
    the interpreter finalizes would abort the process)."""
    with _HELD_LOCK:
        held = list(_HELD.values())
    for one in held:
        with contextlib.suppress(duckdb.Error):  # exit goes on
            one.close(timeout_s=10.0)


atexit.register(release_all)
