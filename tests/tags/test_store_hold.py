"""The tag store's held writing connection (real-time tagging's live writes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from features.crypto import EncryptionKeys, generate_key
from tags.store import TagStore
from tags.store_hold import batch_in_progress, cursor_if_held, held_of

_READ = (
    "import duckdb, sys\n"
    "try:\n"
    "    con = duckdb.connect(sys.argv[1], read_only=True)\n"
    "except duckdb.Error:\n"
    "    print('busy')\n"
    "else:\n"
    "    print(con.execute('SELECT count(*) FROM live_segments').fetchone()[0])\n"
)


def _other_process_reads(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _insert(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute("INSERT INTO live_segments VALUES (?, now()::TIMESTAMP)", [name])


def test_held_writer_is_shared_in_process_and_closed_when_idle(tmp_path: Path) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "a")
    held = held_of(store.path)
    assert held is not None  # still open after the block
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "b")
    assert held_of(store.path) is held  # the same connection, not reopened
    # Readers of this process share it (DuckDB refuses a read-only connection beside it)
    # and see every committed write.
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM live_segments").fetchone() == (2,)
    # Another process cannot open the file while it is held ...
    assert _other_process_reads(store.path) == "busy"
    held.idle_s = 0.2
    with held.busy():  # wakes the closing thread up to the new bound
        pass
    deadline = time.monotonic() + 10
    while held_of(store.path) is not None:
        assert time.monotonic() < deadline, "the idle connection was never closed"
        time.sleep(0.05)
    # ... and can once it was idle for idle_s: closed and checkpointed.
    assert _other_process_reads(store.path) == "2"
    wal = store.path.with_name(store.path.name + ".wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_busy_keeps_it_open_and_max_s_bounds_it(tmp_path: Path) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    with store.keep_open():
        with store.held_writer(idle_s=0.1, max_s=30.0) as con:
            _insert(con, "a")
        time.sleep(0.5)  # longer than idle_s, but busy: not closed
        assert held_of(store.path) is not None
    deadline = time.monotonic() + 10
    while held_of(store.path) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Used all the time, it is still closed once open for max_s.
    with store.held_writer(idle_s=5.0, max_s=0.5) as con:
        _insert(con, "b")
    started = time.monotonic()
    while held_of(store.path) is not None:
        assert time.monotonic() - started < 10, "max_s did not close it"
        with store.held_writer(idle_s=5.0, max_s=0.5) as con:
            con.execute("SELECT 1")
        time.sleep(0.05)
    assert _other_process_reads(store.path) == "2"
    # Busy all the time (a steady stream of micro-batches), it is closed at max_s too.
    with store.keep_open():
        with store.held_writer(idle_s=5.0, max_s=0.5) as con:
            _insert(con, "c")
        started = time.monotonic()
        while held_of(store.path) is not None:
            assert time.monotonic() - started < 10, "max_s did not close a busy connection"
            time.sleep(0.05)
    assert _other_process_reads(store.path) == "3"


def test_release_closes_now_and_the_next_write_reopens(tmp_path: Path) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "a")
    store.release()
    assert held_of(store.path) is None
    assert _other_process_reads(store.path) == "1"
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "b")
    assert held_of(store.path) is not None
    store.release()
    assert _other_process_reads(store.path) == "2"


def test_an_encrypted_store_is_held_in_its_own_catalogue(tmp_path: Path) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test")
    store = TagStore(tmp_path / "tags.duckdb", keys=keys)
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "a")
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM live_segments").fetchone() == (1,)
    store.release()
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM live_segments").fetchone() == (1,)
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(store.path), read_only=True).execute("SELECT * FROM live_segments")


def test_a_due_close_under_a_stream_waits_for_the_next_write(tmp_path: Path) -> None:
    """Busy past max_s, the connection is closed right after the next write (its
    checkpoint then overlaps the next micro-batch's re-tag), or at max_s / 2 late."""
    store = TagStore(tmp_path / "tags.duckdb")
    with store.keep_open():
        with store.held_writer(idle_s=5.0, max_s=1.0) as con:
            _insert(con, "a")
        opened = time.monotonic()
        time.sleep(1.2)  # due at 1.0 s, no write since
        assert held_of(store.path) is not None, "closed while a micro-batch was between writes"
        with store.held_writer(idle_s=5.0, max_s=1.0) as con:
            _insert(con, "b")
        wrote = time.monotonic()
        while held_of(store.path) is not None:
            assert time.monotonic() - wrote < 0.25, "not closed right after the write"
            time.sleep(0.01)
        assert time.monotonic() - opened < 1.5
        # No write at all: closed anyway, max_s / 2 after due.
        with store.held_writer(idle_s=5.0, max_s=1.0) as con:
            _insert(con, "c")
        opened = time.monotonic()
        while held_of(store.path) is not None:
            assert time.monotonic() - opened < 5, "a busy connection was never closed"
            time.sleep(0.02)
        assert time.monotonic() - opened >= 1.4
    assert _other_process_reads(store.path) == "3"


def test_cursor_if_held_never_opens_the_file(tmp_path: Path) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    with store.held_writer(idle_s=60.0, max_s=60.0) as con:
        _insert(con, "a")
    with cursor_if_held(store.path, timeout_s=5) as con:
        assert con is not None
        assert con.execute("SELECT count(*) FROM live_segments").fetchone() == (1,)
    store.release()
    with cursor_if_held(store.path, timeout_s=5) as con:
        assert con is None
        # Nothing of this process holds the file: another process can open it.
        assert _other_process_reads(store.path) == "1"
    assert not batch_in_progress(store.path)
    with store.keep_open():
        assert batch_in_progress(store.path)
