"""The fact store: idempotent re-import, atomic commits, the lock, lineage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import features.store as store_module
from features import StoreError
from features.importer import import_facts
from features.schema import FactsConfig
from features.store import FactStore
from tests.features.facts_helpers import CDNOW_OPTIONS, DATA, NOW, run_import, write


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_reimport_adds_nothing_and_is_reported(tmp_path: Path) -> None:
    first = run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    store = FactStore(tmp_path / "facts")
    before = (store.fingerprint(), store.load_events(), store.load_customers())
    again = run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    assert (first.customers_added, first.events_added) == (3, 6)
    assert (again.customers_added, again.events_added) == (0, 0)
    assert [f.quarantined for f in again.files] == [{"duplicate": 3}, {"duplicate": 6}]
    assert again.repeated_files == [str(DATA / "customers.csv"), str(DATA / "events.csv")]
    assert store.fingerprint() == before[0]
    pd.testing.assert_frame_equal(store.load_events(), before[1])
    pd.testing.assert_frame_equal(store.load_customers(), before[2])
    log = store.import_log()
    assert log["accepted"].tolist() == [3, 6, 0, 0]
    assert log["sha256"].iloc[1] == log["sha256"].iloc[3]


def test_fingerprint_changes_with_content_and_events_stay_sorted(tmp_path: Path) -> None:
    run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    store = FactStore(tmp_path / "facts")
    first = store.fingerprint()
    more = write(
        tmp_path / "more.csv",
        "customer_id,occurred_at,event_type\nc1,2021-01-01T12:00:00,login\n",
    )
    run_import(tmp_path, events=more)
    assert store.fingerprint() != first
    events = pq.read_table(store.events_path).to_pandas()
    assert events["customer_id"].tolist()[:3] == ["c1", "c1", "c1"]
    assert events["event_type"].tolist()[:3] == ["login", "browse", "purchase"]
    manifest = store.manifest()
    assert (manifest["customers"], manifest["events"]) == (3, 7)
    assert manifest["event_types"]["login"] == 2


def test_empty_store_reads_as_empty_and_says_what_to_do(tmp_path: Path) -> None:
    store = FactStore(tmp_path / "facts")
    assert store.load_events().empty
    assert list(store.load_events(["customer_id", "amount"]).columns) == ["customer_id", "amount"]
    assert store.load_customers().empty
    assert store.import_log().empty
    with pytest.raises(StoreError, match="tagsmith facts import"):
        store.last_event_at()
    with pytest.raises(StoreError, match="Expected event columns"):
        store.load_events(["nope"])


def test_failure_mid_import_leaves_previous_data_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    bad = write(tmp_path / "in" / "new.txt", "00009 19980101 1 5.00\n00001 19980101 2 6.00\n")
    before = _snapshot(tmp_path)
    calls = []
    real_write = pq.write_table

    def failing_write(table: object, where: object, **kwargs: object) -> None:
        calls.append(where)
        if len(calls) == 2:  # customers written, events half-way
            raise OSError("disk full (injected)")
        real_write(table, where, **kwargs)  # type: ignore[arg-type]

    # The store writes Parquet through features.crypto, which calls pq.write_table.
    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError, match="injected"):
        run_import(tmp_path, events=bad, events_options=CDNOW_OPTIONS, derive_customers=True)
    assert len(calls) == 2
    assert _snapshot(tmp_path) == before  # nothing written, no temp file left
    assert len(FactStore(tmp_path / "facts").load_events()) == 15


def test_the_customers_file_is_written_while_the_events_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_started = threading.Event()
    waited: list[bool] = []
    real_write = pq.write_table

    def write_table(table: object, where: object, **kwargs: object) -> None:
        if Path(str(where)).name.startswith("customers"):
            # Written one after the other, the events would start only after this.
            waited.append(events_started.wait(timeout=10))
        else:
            events_started.set()
        real_write(table, where, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "write_table", write_table)
    run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    assert waited == [True]
    monkeypatch.undo()
    plain = tmp_path / "plain"
    run_import(plain, customers=DATA / "customers.csv", events=DATA / "events.csv")
    store, again = FactStore(tmp_path / "facts"), FactStore(plain / "facts")
    assert store.manifest()["fingerprint"] == again.manifest()["fingerprint"]
    pd.testing.assert_frame_equal(store.load_customers(), again.load_customers())


def test_a_failed_customers_write_on_its_thread_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    new = write(tmp_path / "in" / "new.txt", "00009 19980101 1 5.00\n")
    before = _snapshot(tmp_path)
    real_write = pq.write_table
    threads = []

    def failing_write(table: object, where: object, **kwargs: object) -> None:
        if Path(str(where)).name.startswith("customers"):
            threads.append(threading.current_thread().name)
            raise OSError("disk full (injected)")
        real_write(table, where, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(OSError, match="injected"):
        run_import(tmp_path, events=new, events_options=CDNOW_OPTIONS, derive_customers=True)
    assert [t.split("_")[0] for t in threads] == ["tagsmith-customers"]
    assert _snapshot(tmp_path) == before  # nothing written, no temp file left


def test_kill_after_commit_point_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    real_replace = os.replace
    renames = []

    def dying_replace(src: str | Path, dst: str | Path) -> None:
        renames.append(Path(dst).name)
        real_replace(src, dst)
        if Path(dst).name == "journal.json":
            raise KeyboardInterrupt("killed right after the commit point (injected)")

    monkeypatch.setattr(store_module.os, "replace", dying_replace)
    more = write(tmp_path / "more.txt", "00001 19980101 2 6.00\n")
    with pytest.raises(KeyboardInterrupt):
        run_import(tmp_path, events=more, events_options=CDNOW_OPTIONS)
    monkeypatch.setattr(store_module.os, "replace", real_replace)
    assert (tmp_path / "facts" / "journal.json").exists()
    # The next reader finishes the committed import: every file moves together.
    store = FactStore(tmp_path / "facts")
    assert len(store.load_events()) == 16
    assert not (tmp_path / "facts" / "journal.json").exists()
    assert store.manifest()["events"] == 16
    assert store.import_log()["accepted"].tolist() == [15, 1]


def test_kill_before_commit_point_keeps_old_data_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    before = _snapshot(tmp_path / "facts")

    def dying_fsync(path: Path) -> None:
        raise KeyboardInterrupt("killed before the commit point (injected)")

    monkeypatch.setattr(store_module, "_fsync", dying_fsync)
    more = write(tmp_path / "more.txt", "00001 19980101 2 6.00\n")
    with pytest.raises(KeyboardInterrupt):
        run_import(tmp_path, events=more, events_options=CDNOW_OPTIONS)
    monkeypatch.undo()
    assert _snapshot(tmp_path / "facts") == before
    assert len(FactStore(tmp_path / "facts").load_events()) == 15


def test_two_imports_cannot_interleave(tmp_path: Path) -> None:
    holder = FactStore(tmp_path / "facts")
    with holder.lock():
        waiting = FactStore(tmp_path / "facts", lock_timeout=0.2)
        with pytest.raises(StoreError, match="held by another import"):
            import_facts(
                waiting,
                config=FactsConfig(),
                quarantine_dir=tmp_path / "quarantine",
                now=NOW,
                events=DATA / "cdnow_sample.txt",
                events_options=CDNOW_OPTIONS,
            )
    assert not waiting.events_path.exists()


def test_import_log_records_lineage(tmp_path: Path) -> None:
    report = run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    log = FactStore(tmp_path / "facts").import_log()
    row = log.iloc[0]
    assert row["source"] == str(DATA / "cdnow_sample.txt")
    assert row["sha256"] == report.files[0].sha256
    assert (row["rows_read"], row["accepted"], row["quarantined"]) == (15, 15, 0)
    assert row["derived_customers"] == 5
    assert row["imported_at"] == pd.Timestamp("2021-06-01T00:00:00Z")
    lines = (tmp_path / "facts" / "imports.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["quarantined_by_reason"] == {}


def test_next_import_removes_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    # What SIGKILL before the commit point leaves: temp files that were never renamed.
    (tmp_path / "facts").mkdir()
    (tmp_path / "quarantine").mkdir()
    leftovers = [
        tmp_path / "facts" / "events.parquet.tmp-0123456789ab",
        tmp_path / "facts" / "journal.json.tmp-0123456789ab",
        tmp_path / "quarantine" / "20210601T000000Z-e.csv.csv.tmp-0123456789ab",
    ]
    for path in leftovers:
        path.write_bytes(b"half-written")
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    assert not any(path.exists() for path in leftovers)
    assert len(FactStore(tmp_path / "facts").load_events()) == 15


KILLED_IMPORT = """
import sys, time
from pathlib import Path
import pandas as pd
import features.store as store_module
from features.importer import import_facts
from features.schema import FactsConfig
from tests.features.facts_helpers import CDNOW_OPTIONS

def stall(path):  # every temp file is written; the commit point is next
    Path(sys.argv[1], "ready").write_text("x")
    time.sleep(60)

store_module._fsync = stall
root = Path(sys.argv[1])
import_facts(store_module.FactStore(root / "facts"), config=FactsConfig(),
             quarantine_dir=root / "quarantine", now=pd.Timestamp("2021-06-01T00:00:00Z"),
             events=Path(sys.argv[2]), events_options=CDNOW_OPTIONS)
"""


def test_sigkill_mid_import_leaves_previous_data_intact(tmp_path: Path) -> None:
    run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    before = _snapshot(tmp_path / "facts")
    more = write(tmp_path / "in" / "more.txt", "00001 19980101 2 6.00\n00077 19980101 x 1\n")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_IMPORT, str(tmp_path), str(more)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert child.poll() is None, "the import exited before reaching the commit point"
            assert time.monotonic() < deadline, "the import never reached the commit point"
            time.sleep(0.05)
        assert any(".tmp-" in p.name for p in (tmp_path / "facts").iterdir())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = FactStore(tmp_path / "facts")
    assert len(store.load_events()) == 15
    assert store.import_log()["accepted"].tolist() == [15]
    # The next import under the lock clears the dead run's temp files, then works.
    run_import(tmp_path, events=more, events_options=CDNOW_OPTIONS)
    assert len(store.load_events()) == 16
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert before.keys() <= _snapshot(tmp_path / "facts").keys()
