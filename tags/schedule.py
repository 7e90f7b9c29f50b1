"""Scheduled refresh: which tags are due, from each tag's ``refresh`` and the last run.

A tagging run computes every active tag, so the schedule is the tightest ``refresh`` of
the active tags: a run is due when the newest successful run finished longer ago than
that period. ``on_demand`` tags never make a run due. Pure computation: the caller gives
the last run's time and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tags.definitions import TagDefinition

__all__ = ["PERIODS", "Schedule", "crontab_line", "schedule_of"]

PERIODS: dict[str, timedelta] = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30),
}
_CRON = {
    "hourly": "0 * * * *",
    "daily": "15 2 * * *",
    "weekly": "15 2 * * 1",
    "monthly": "15 2 1 * *",
}


@dataclass(frozen=True)
class Schedule:
    """When the next tagging run is due.

    Attributes:
        refresh: The tightest ``refresh`` among active tags (None: all on demand).
        tags: The active tags with that refresh.
        last_run_at: When the newest successful run finished (None: never).
        due_at: When the next run is due (None: never, all tags on demand).
        due: Whether a run is due at ``now``.
    """

    refresh: str | None
    tags: tuple[str, ...]
    last_run_at: datetime | None
    due_at: datetime | None
    due: bool


def schedule_of(
    tags: Iterable[TagDefinition], *, last_run_at: datetime | None, now: datetime
) -> Schedule:
    """The schedule of the active ``tags`` given the last run's time."""
    active = [t for t in tags if t.status == "active" and t.refresh in PERIODS]
    if not active:
        return Schedule(None, (), last_run_at, None, False)
    refresh = min((t.refresh for t in active), key=lambda r: PERIODS[r])
    chosen = tuple(t.id for t in active if t.refresh == refresh)
    if last_run_at is None:
        return Schedule(refresh, chosen, None, now, True)
    due_at = last_run_at + PERIODS[refresh]
    return Schedule(refresh, chosen, last_run_at, due_at, now >= due_at)


def crontab_line(refresh: str, command: str) -> str:
    """A crontab line running ``command`` at the ``refresh`` period."""
    return f"{_CRON[refresh]} {command}"
