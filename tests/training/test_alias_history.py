from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from training.alias_history import AliasHistory
from training.errors import RegistryError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _move(h: AliasHistory, version: str | None, prev: str | None, day: int, action: str) -> None:
    h.append(
        model="m",
        alias="champion",
        version=version,
        previous_version=prev,
        at=T0 + timedelta(days=day),
        actor="ana",
        action=action,
        reason=f"day {day}",
    )


def test_intervals_say_who_held_the_alias_from_when_to_when(tmp_path: Path) -> None:
    h = AliasHistory(tmp_path / "h.sqlite")
    _move(h, "1", None, 0, "promote")
    h.append(
        model="m",
        alias="challenger",
        version="2",
        previous_version=None,
        at=T0 + timedelta(days=1),
        actor="trainer",
        action="register",
    )
    _move(h, "2", "1", 3, "promote")
    spans = h.intervals("m")
    assert [(s.alias, s.version, s.start.day, s.end.day if s.end else None) for s in spans] == [
        ("champion", "1", 1, 4),
        ("challenger", "2", 2, None),
        ("champion", "2", 4, None),
    ]
    assert spans[2].reason == "day 3"
    assert h.intervals("other") == []


def test_rollback_walks_back_instead_of_toggling(tmp_path: Path) -> None:
    h = AliasHistory(tmp_path / "h.sqlite")
    _move(h, "1", None, 0, "promote")
    _move(h, "2", "1", 1, "promote")
    _move(h, "3", "2", 2, "promote")
    assert h.rollback_target("m", "champion") == "2"
    _move(h, "2", "3", 3, "rollback")
    assert h.rollback_target("m", "champion") == "1"
    _move(h, "1", "2", 4, "rollback")
    assert h.rollback_target("m", "champion") is None


def test_table_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = AliasHistory(path)
    _move(h, "1", None, 0, "promote")
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE alias_events SET version = '9'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM alias_events")
    conn.close()
    assert [e.version for e in h.events("m")] == ["1"]


def test_naive_time_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="timezone"):
        AliasHistory(tmp_path / "h.sqlite").append(
            model="m",
            alias="a",
            version="1",
            previous_version=None,
            at=datetime(2026, 1, 1),
            actor="x",
            action="promote",
        )
