"""Applied versions of the triggers, syncs and destinations: plan, apply, history.

``plan`` compares the definitions in ``triggers/*.yaml`` with the last applied version
and lists what is added, removed and changed, refusing what governance forbids:
a definition changed without raising its ``version``, a version going down, status
moves other than draft -> active <-> paused -> deprecated, removing an active trigger
or sync (pause or deprecate it first), and anything :func:`check_definitions` refuses
(unknown tags, a role that may not see a tag it reads, purposes that differ).

``apply`` records the definitions as a new numbered version (JSON, written atomically)
together with its **position**: the last transition seq in the tag store when it was
applied. A transition is judged by the version in force when it was recorded (the
newest version whose position is below it), so a trigger never fires for changes
recorded before it existed, and a dispatcher that lags behind still applies each
version to exactly its own transitions.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from activation.definitions import KINDS, CheckResult, Definitions
from activation.errors import DefinitionError, PlanRefused

__all__ = [
    "ALLOWED_STATUS_MOVES",
    "AppliedVersion",
    "Change",
    "Plan",
    "TriggerHistory",
    "version_for",
]

ALLOWED_STATUS_MOVES: frozenset[tuple[str, str]] = frozenset(
    {
        ("draft", "draft"),
        ("draft", "active"),
        ("active", "active"),
        ("active", "paused"),
        ("paused", "paused"),
        ("paused", "active"),
        ("active", "deprecated"),
        ("paused", "deprecated"),
        ("deprecated", "deprecated"),
    }
)
_FILE = re.compile(r"^v(\d{4,})\.json$")
_META = ("version", "status")


@dataclass(frozen=True)
class Change:
    """One item's change against the last applied version.

    Attributes:
        kind: ``destinations``, ``triggers`` or ``syncs``.
        name: The item.
        what: ``added``, ``removed`` or ``changed``.
        fields: Fields that differ (``changed`` only).
        before: (status, version) before; None when added.
        after: (status, version) after; None when removed.
    """

    kind: str
    name: str
    what: str
    fields: tuple[str, ...] = ()
    before: tuple[str, int] | None = None
    after: tuple[str, int] | None = None

    def describe(self) -> str:
        """One line for ``tagsmith triggers plan``."""
        label = f"{self.kind[:-1]} {self.name}"
        if self.what == "added":
            assert self.after is not None
            return f"+ {label} (new, {_state(self.after)})"
        if self.what == "removed":
            assert self.before is not None
            return f"- {label} (removed; was {_state(self.before)})"
        assert self.before is not None
        assert self.after is not None
        moves = []
        if self.before[0] != self.after[0]:
            moves.append(f"{self.before[0]} -> {self.after[0]}")
        if self.before[1] != self.after[1]:
            moves.append(f"v{self.before[1]} -> v{self.after[1]}")
        return f"~ {label} ({', '.join(moves) or 'same version'}): {', '.join(self.fields)}"


@dataclass
class Plan:
    """What ``apply`` would record.

    Attributes:
        base_version: The last applied version (None: none yet).
        changes: Per-item changes.
        problems: Why ``apply`` would be refused.
        warnings: Worth a look, not refused.
    """

    base_version: int | None
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when nothing changed since the last apply."""
        return not self.changes


@dataclass(frozen=True)
class AppliedVersion:
    """One applied version.

    Attributes:
        version: Its number.
        position: Last tag-store transition seq when it was applied.
        definitions: What was applied.
        pinned: Sync name -> the audience expression pinned at apply.
        applied_at: When (ISO 8601).
        applied_by: Who.
    """

    version: int
    position: int
    definitions: Definitions
    pinned: dict[str, str]
    applied_at: str = ""
    applied_by: str = ""


def _status(item: dict[str, Any]) -> str:
    # Destinations have no status: they are in use while something refers to them.
    return str(item.get("status", ""))


def _state(state: tuple[str, int]) -> str:
    return f"{state[0]}, v{state[1]}" if state[0] else f"v{state[1]}"


def _comparable(kind: str, name: str, item: dict[str, Any], pinned: dict[str, str]) -> dict:
    out = dict(item)
    if kind == "syncs":
        out["audience_expression"] = pinned.get(name)
    return out


class TriggerHistory:
    """Applied versions in a folder (``v0001.json``, ...).

    Args:
        directory: The folder (``data/trigger_versions`` in a project).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def versions(self) -> list[int]:
        """Applied version numbers, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _record(self, version: int) -> dict[str, Any]:
        path = self.directory / f"v{version:04d}.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DefinitionError(f"{path}: cannot read the applied version: {exc}") from exc
        return data

    def load(self, version: int | None = None) -> AppliedVersion | None:
        """An applied version (default: the latest; None when none is applied).

        Raises:
            DefinitionError: No such version, or its file is unreadable.
        """
        versions = self.versions()
        if not versions:
            if version is None:
                return None
            raise DefinitionError(f"Expected trigger version {version}. Got none applied yet.")
        version = versions[-1] if version is None else version
        if version not in versions:
            raise DefinitionError(
                f"Expected one of the applied trigger versions {versions}. Got {version}."
            )
        return _applied(self._record(version))

    def all(self) -> list[AppliedVersion]:
        """Every applied version, oldest first."""
        return [_applied(self._record(v)) for v in self.versions()]

    def plan(self, defs: Definitions, check: CheckResult) -> Plan:
        """Compare ``defs`` (checked by :func:`check_definitions`) with the last version."""
        last = self.load()
        before = last.definitions.to_json() if last else {k: {} for k in KINDS}
        before_pinned = last.pinned if last else {}
        after = defs.to_json()
        plan = Plan(base_version=last.version if last else None)
        plan.problems.extend(check.problems)
        plan.warnings.extend(check.warnings)
        for kind in KINDS:
            self._plan_kind(plan, defs, kind, before[kind], after[kind], before_pinned, check)
        return plan

    @staticmethod
    def _plan_kind(
        plan: Plan,
        defs: Definitions,
        kind: str,
        before: dict[str, dict[str, Any]],
        after: dict[str, dict[str, Any]],
        before_pinned: dict[str, str],
        check: CheckResult,
    ) -> None:
        for name, new in after.items():
            where = defs.where(kind, name)
            old = before.get(name)
            new_state = (_status(new), int(new["version"]))
            if old is None:
                plan.changes.append(Change(kind, name, "added", after=new_state))
                if new_state[0] == "deprecated":
                    plan.problems.append(f"{where}: new items start as draft, active or paused.")
                continue
            a = _comparable(kind, name, old, before_pinned)
            b = _comparable(kind, name, new, check.pinned)
            if a == b:
                continue
            fields = tuple(sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)))
            old_state = (_status(old), int(old["version"]))
            plan.changes.append(
                Change(kind, name, "changed", fields=fields, before=old_state, after=new_state)
            )
            if kind != "destinations" and (old_state[0], new_state[0]) not in ALLOWED_STATUS_MOVES:
                plan.problems.append(
                    f"{where}: status may only move draft -> active <-> paused -> deprecated. "
                    f"Got {old_state[0]} -> {new_state[0]}."
                )
            definition = [f for f in fields if f not in _META]
            if new_state[1] < old_state[1]:
                plan.problems.append(
                    f"{where}: the version must not go down. Got v{old_state[1]} -> "
                    f"v{new_state[1]}."
                )
            elif definition and new_state[1] == old_state[1]:
                plan.problems.append(
                    f"{where}: {', '.join(definition)} changed, so the version must go up "
                    f"(expected version {old_state[1] + 1}). Got version {new_state[1]} again."
                )
        for name, old in before.items():
            if name in after:
                continue
            old_state = (_status(old), int(old["version"]))
            plan.changes.append(Change(kind, name, "removed", before=old_state))
            if kind != "destinations" and old_state[0] == "active":
                plan.problems.append(
                    f"{kind[:-1]} '{name}' is active: pause or deprecate it and apply before "
                    "removing it."
                )

    def apply(
        self,
        defs: Definitions,
        check: CheckResult,
        *,
        position: int,
        applied_at: datetime,
        applied_by: str = "",
    ) -> tuple[int, Plan]:
        """Record ``defs`` as a new version; returns its number and the plan.

        Nothing is written when nothing changed (the current number is returned).

        Raises:
            PlanRefused: The plan has problems (listed in the message).
        """
        plan = self.plan(defs, check)
        if plan.problems:
            raise PlanRefused(
                "The triggers cannot be applied:\n" + "\n".join(f"  {p}" for p in plan.problems)
            )
        if plan.empty and plan.base_version is not None:
            return plan.base_version, plan
        version = (plan.base_version or 0) + 1
        record = {
            "version": version,
            "applied_at": applied_at.isoformat(),
            "applied_by": applied_by,
            "position": int(position),
            "fingerprint": defs.fingerprint(),
            "changes": [c.describe() for c in plan.changes],
            "definitions": defs.to_json(),
            "pinned": dict(sorted(check.pinned.items())),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"v{version:04d}.json"
        if path.exists():
            raise PlanRefused(f"{path} already exists: another apply ran at the same time.")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        return version, plan


def _applied(record: dict[str, Any]) -> AppliedVersion:
    return AppliedVersion(
        version=int(record["version"]),
        position=int(record.get("position", 0)),
        definitions=Definitions.from_json(record.get("definitions") or {}),
        pinned=dict(record.get("pinned") or {}),
        applied_at=str(record.get("applied_at", "")),
        applied_by=str(record.get("applied_by", "")),
    )


def version_for(versions: list[AppliedVersion], after_seq: int) -> AppliedVersion | None:
    """The version in force for a group recorded after ``after_seq`` (None: none yet)."""
    chosen = None
    for v in versions:
        if v.position <= after_seq:
            chosen = v
    return chosen
