"""Durable, append-only history of registry alias moves (MLflow keeps none).

One SQLite table, one row per move: which version an alias of a registered model
now points to, the one it pointed to before, when, who, which action and why.
Triggers refuse UPDATE and DELETE, so the table can only grow. Intervals ("v3 was
champion from A to B") are derived from the rows, never stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from training.errors import RegistryError

__all__ = ["AliasEvent", "AliasHistory", "AliasInterval"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alias_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT,
    previous_version TEXT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alias_events_model ON alias_events (model, alias, id);
CREATE TRIGGER IF NOT EXISTS alias_events_no_update BEFORE UPDATE ON alias_events
BEGIN SELECT RAISE(ABORT, 'alias history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS alias_events_no_delete BEFORE DELETE ON alias_events
BEGIN SELECT RAISE(ABORT, 'alias history is append-only'); END;
"""

# Actions that take the alias back to an earlier holder instead of stacking a new one.
_ROLLBACK = "rollback"


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias move.

    Attributes:
        id: Order of recording (increasing).
        model: Registered model name.
        alias: The alias moved ('champion', 'challenger', ...).
        version: The version it points to now (None when the alias was removed).
        previous_version: The version it pointed to before (None when unset).
        at: When (UTC).
        actor: Who moved it.
        action: 'promote', 'force-promote', 'rollback', 'register', 'observed', ...
        reason: Why, in the actor's words (required for forced promotions).
        details: Extra facts (gate results, window, ...), JSON-serialisable.
    """

    id: int
    model: str
    alias: str
    version: str | None
    previous_version: str | None
    at: datetime
    actor: str
    action: str
    reason: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AliasInterval:
    """A span during which one version held an alias.

    Attributes:
        alias: The alias.
        version: The version holding it.
        start: When it started holding it.
        end: When it stopped (None while it still holds it).
        actor: Who moved the alias to it.
        action: How ('promote', 'rollback', ...).
        reason: Why.
    """

    alias: str
    version: str
    start: datetime
    end: datetime | None
    actor: str
    action: str
    reason: str


class AliasHistory:
    """The alias history of every model of one registry, in a SQLite file.

    Args:
        path: The SQLite file (created with its parent folder on first use).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise RegistryError(
                f"Expected a readable alias history database at {self.path}. Got: {exc}"
            ) from exc
        try:
            conn.executescript(_SCHEMA)
            yield conn
        finally:
            conn.close()

    def append(
        self,
        *,
        model: str,
        alias: str,
        version: str | None,
        previous_version: str | None,
        at: datetime,
        actor: str,
        action: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AliasEvent:
        """Record one alias move and return it (with its id)."""
        if at.tzinfo is None:
            raise RegistryError(f"Expected a timezone-aware time for the alias move. Got {at}.")
        payload = json.dumps(details or {}, sort_keys=True, default=str)
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO alias_events "
                "(model, alias, version, previous_version, at, actor, action, reason, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model,
                    alias,
                    version,
                    previous_version,
                    at.isoformat(),
                    actor,
                    action,
                    reason,
                    payload,
                ),
            )
            row_id = cur.lastrowid
        assert row_id is not None
        return AliasEvent(
            row_id,
            model,
            alias,
            version,
            previous_version,
            at,
            actor,
            action,
            reason,
            json.loads(payload),
        )

    def events(self, model: str, alias: str | None = None) -> list[AliasEvent]:
        """Every recorded move of ``model`` (optionally one alias), oldest first."""
        query = "SELECT * FROM alias_events WHERE model = ?"
        params: tuple[str, ...] = (model,)
        if alias is not None:
            query += " AND alias = ?"
            params = (model, alias)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [
            AliasEvent(
                id=r[0],
                model=r[1],
                alias=r[2],
                version=r[3],
                previous_version=r[4],
                at=datetime.fromisoformat(r[5]),
                actor=r[6],
                action=r[7],
                reason=r[8],
                details=json.loads(r[9]),
            )
            for r in rows
        ]

    def last_recorded(self, model: str, alias: str) -> str | None:
        """The version ``alias`` pointed to at its last recorded move (None if never/removed)."""
        events = self.events(model, alias)
        return events[-1].version if events else None

    def intervals(self, model: str) -> list[AliasInterval]:
        """Which version held each alias of ``model`` from when to when, oldest first."""
        out: list[AliasInterval] = []
        open_by_alias: dict[str, AliasInterval] = {}
        for ev in self.events(model):
            current = open_by_alias.pop(ev.alias, None)
            if current is not None:
                out.append(
                    AliasInterval(
                        current.alias,
                        current.version,
                        current.start,
                        ev.at,
                        current.actor,
                        current.action,
                        current.reason,
                    )
                )
            if ev.version is not None:
                open_by_alias[ev.alias] = AliasInterval(
                    ev.alias, ev.version, ev.at, None, ev.actor, ev.action, ev.reason
                )
        out.extend(open_by_alias.values())
        return sorted(out, key=lambda i: (i.start, i.alias))

    def rollback_target(self, model: str, alias: str) -> str | None:
        """The version a rollback of ``alias`` would restore (None when there is none).

        Holders form a stack: a promotion pushes a version, a rollback pops back to
        the one below, so repeated rollbacks walk further back in time instead of
        toggling between two versions.
        """
        stack: list[str] = []
        for ev in self.events(model, alias):
            if ev.action == _ROLLBACK:
                if stack:
                    stack.pop()
            elif ev.version is None:
                stack.clear()
            elif not stack or stack[-1] != ev.version:
                stack.append(ev.version)
        return stack[-2] if len(stack) >= 2 else None
