"""Hostile finding 14-7: a damaged tag store is told apart from a locked one.

A truncated ``data/tags.duckdb`` was reported as "in use by another process ... try
again" after the full busy wait, sending the user to wait for nothing. Only a lock is
retried now; a truncated or foreign file fails at once with what it is and the way out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tags.errors import TagStoreError
from tags.store import TagStore
from tests.hostile.cli_helpers import SNAPSHOT
from tests.tags.conftest import long_table


def _store(path: Path) -> TagStore:
    store = TagStore(path, busy_timeout_s=5.0)
    store.write_snapshot(long_table(SNAPSHOT, "2024-01-31"), as_of="2024-01-31")
    return store


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_store_is_named_at_once(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "tags.duckdb"
    _store(path)
    if damage == "truncated":
        with path.open("r+b") as fh:
            fh.truncate(5000)
    elif damage == "garbage":
        path.write_bytes(b"not a database\n" * 500)
    else:
        path.write_bytes(b"")
    store = TagStore(path, busy_timeout_s=5.0)
    began = time.monotonic()
    with pytest.raises(TagStoreError) as info:
        store.snapshot_dates()
    assert time.monotonic() - began < 2.0  # no busy wait for a file nobody holds
    message = str(info.value)
    assert "in use by another process" not in message
    assert "damaged or foreign file" in message
    assert "tagsmith store restore" in message


def test_store_held_by_another_process_is_still_busy(tmp_path: Path) -> None:
    path = tmp_path / "tags.duckdb"
    _store(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
            "print('held', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TagStoreError, match="in use by another process"):
            TagStore(path, busy_timeout_s=0.5).snapshot_dates()
    finally:
        holder.kill()
        holder.wait()
