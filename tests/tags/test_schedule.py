"""Scheduled refresh: the tightest refresh of the active tags decides when a run is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tags.definitions import TagDefinition
from tags.schedule import crontab_line, schedule_of

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def _tag(tag_id: str, refresh: str, status: str = "active") -> TagDefinition:
    return TagDefinition.model_validate(
        {
            "id": tag_id,
            "display_name": f"lifecycle_{tag_id}",
            "category": "lifecycle",
            "description": "d",
            "owner": "o",
            "source": "rule",
            "value_type": "boolean",
            "status": status,
            "refresh": refresh,
            "rule": "frequency_orders >= 1",
        }
    )


def test_tightest_active_refresh_decides() -> None:
    tags = [_tag("a", "weekly"), _tag("b", "daily"), _tag("c", "hourly", status="draft")]
    never = schedule_of(tags, last_run_at=None, now=NOW)
    assert (never.refresh, never.tags, never.due) == ("daily", ("b",), True)
    recent = schedule_of(tags, last_run_at=NOW - timedelta(hours=3), now=NOW)
    assert not recent.due
    assert recent.due_at == NOW + timedelta(hours=21)
    stale = schedule_of(tags, last_run_at=NOW - timedelta(days=1, seconds=1), now=NOW)
    assert stale.due


def test_on_demand_only_is_never_due() -> None:
    s = schedule_of([_tag("a", "on_demand")], last_run_at=None, now=NOW)
    assert (s.refresh, s.due, s.due_at) == (None, False, None)


def test_crontab_lines() -> None:
    assert crontab_line("hourly", "x") == "0 * * * * x"
    assert crontab_line("daily", "cd /p && tagsmith schedule run") == (
        "15 2 * * * cd /p && tagsmith schedule run"
    )
