"""The queued audit writer: order kept, waiting entries written in one batch (the writer
pauses for them), failures counted."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from serving.auditing import QueuedAudit
from serving.sources import JsonAudit
from tags.audit import AuditLog
from tags.errors import AuditError


def _entry(i: int, extra: Any = None) -> dict[str, Any]:
    return {
        "actor": "crm",
        "role": "marketing",
        "action": "serve.tags",
        "tags": ["b", "a"],
        "n_customers": i,
        "query": {"customer_id_hashes": [f"h{i}"], "tags": []},
        "extra": {"i": i} if extra is None else extra,
    }


class GatedLog:
    """A writer whose first append blocks until released; records every call."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[str, list[int]]] = []

    def append(self, **entry: Any) -> None:
        self.entered.set()
        self.release.wait(10)
        self.calls.append(("append", [entry["n_customers"]]))

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            if e["extra"].get("bad"):
                raise TypeError("not serialisable")
        self.calls.append(("append_many", [e["n_customers"] for e in entries]))


def test_waiting_entries_are_written_in_one_batch_in_order() -> None:
    writer = GatedLog()
    audit = QueuedAudit(writer)
    audit.append(**_entry(0))
    assert writer.entered.wait(10)  # the thread holds entry 0 while five more queue up
    for i in range(1, 6):
        audit.append(**_entry(i))
    writer.release.set()
    audit.flush()
    assert writer.calls == [("append", [0]), ("append_many", [1, 2, 3, 4, 5])]
    assert audit.failures == 0
    audit.close()


def test_an_entry_that_fails_the_batch_loses_only_itself() -> None:
    writer = GatedLog()
    audit = QueuedAudit(writer)
    audit.append(**_entry(0))
    assert writer.entered.wait(10)
    audit.append(**_entry(1))
    audit.append(**_entry(2, extra={"bad": True}))
    audit.append(**_entry(3))
    writer.release.set()
    audit.flush()
    # Retried one by one (the fake's single append accepts every entry).
    assert writer.calls == [("append", [0]), ("append", [1]), ("append", [2]), ("append", [3])]
    audit.close()


def test_batches_on_the_real_log_keep_the_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", key=b"k" * 32, checkpoint=tmp_path / "cp" / "head")
    audit = QueuedAudit(JsonAudit(log))
    for i in range(200):
        audit.append(**_entry(i))
    audit.flush()
    audit.close()
    entries = log.entries()
    assert [e["n_customers"] for e in entries] == list(range(200))
    assert [e["seq"] for e in entries] == list(range(1, 201))
    assert entries[7]["query"] == '{"customer_id_hashes":["h7"],"tags":[]}'
    assert entries[7]["tags"] == ["a", "b"]
    assert log.verify().ok


class BrokenDiskLog(GatedLog):
    """Batches fail as a full disk would, after serialising (no retry may duplicate)."""

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        raise OSError("No space left on device")


def test_a_batch_the_log_cannot_write_counts_every_entry_and_is_not_retried() -> None:
    writer = BrokenDiskLog()
    audit = QueuedAudit(writer)
    audit.append(**_entry(0))
    assert writer.entered.wait(10)
    for i in range(1, 4):
        audit.append(**_entry(i))
    writer.release.set()
    audit.flush()
    assert writer.calls == [("append", [0])]
    assert audit.failures == 3
    audit.close()


class RefusingLog(GatedLog):
    """The log refuses every write as a log shorter than its checkpoint does."""

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        raise AuditError("Expected the audit log to hold entry #9. Got entries up to #3 only.")

    def append(self, **entry: Any) -> None:
        raise AuditError("Expected the audit log to hold entry #9. Got entries up to #3 only.")


def test_the_logs_own_refusal_is_one_line_once_not_a_stack_per_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = RefusingLog()
    writer.release.set()
    audit = QueuedAudit(writer, linger_s=0)
    with caplog.at_level(logging.ERROR, logger="serving.auditing"):
        for i in range(5):
            audit.append(**_entry(i))
            audit.flush()
    audit.close()
    assert audit.failures == 5
    records = [r for r in caplog.records if r.name == "serving.auditing"]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "entry #9" in records[0].getMessage()


class FailingLog(BrokenDiskLog):
    """Single appends fail too, with an error the log does not explain."""

    def append(self, **entry: Any) -> None:
        raise OSError("No space left on device")


def test_an_unexpected_write_failure_keeps_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    writer = FailingLog()
    audit = QueuedAudit(writer, linger_s=0)
    with caplog.at_level(logging.ERROR, logger="serving.auditing"):
        audit.append(**_entry(0))
        audit.append(**_entry(1))
        audit.flush()
    audit.close()
    records = [r for r in caplog.records if r.name == "serving.auditing"]
    assert audit.failures == 2
    assert records
    assert all(r.exc_info is not None for r in records)


class RecordingLog:
    """A writer that records each call's entries (``n_customers``) and when it came."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.written = threading.Event()

    def append(self, **entry: Any) -> None:
        self.calls.append([entry["n_customers"]])
        self.written.set()

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        self.calls.append([e["n_customers"] for e in entries])
        self.written.set()


def test_entries_arriving_during_the_pause_join_one_write() -> None:
    writer = RecordingLog()
    audit = QueuedAudit(writer, linger_s=3.0)
    audit.append(**_entry(0))
    time.sleep(0.3)  # a writer that did not pause would have written entry 0 alone by now
    for i in range(1, 5):
        audit.append(**_entry(i))
    assert writer.written.wait(10)  # no flush: the pause itself ends the batch
    assert writer.calls == [[0, 1, 2, 3, 4]]
    audit.close()


def test_flush_and_close_end_the_pause() -> None:
    writer = RecordingLog()
    audit = QueuedAudit(writer, linger_s=60.0)
    audit.append(**_entry(0))
    started = time.monotonic()
    audit.flush()
    assert writer.calls == [[0]]
    audit.append(**_entry(1))
    audit.close()
    assert writer.calls == [[0], [1]]
    assert time.monotonic() - started < 30  # neither waited out the 60 s pause


def test_without_a_pause_each_entry_is_written_at_once() -> None:
    writer = RecordingLog()
    audit = QueuedAudit(writer, linger_s=0.0)
    audit.append(**_entry(0))
    assert writer.written.wait(10)
    assert writer.calls == [[0]]
    audit.close()
    with pytest.raises(ValueError, match="linger_s >= 0"):
        QueuedAudit(writer, linger_s=-1.0)
