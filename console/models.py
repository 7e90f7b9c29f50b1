"""The models page: registered predictors, champion and challenger, gates, alias history.

Reading the MLflow registry costs tens of milliseconds per call, so a model's card is
read once per state of the registry (the ``marker`` the wiring gives changes whenever
the registry database or the alias history is written) and kept. Promotion and
rollback go through the same functions as ``tagsmith models promote|rollback`` (the
wiring passes them in), run as :class:`console.jobs.Job` s, and are audited by them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from training.gates import METRIC_DIRECTIONS
from training.promotion import PromotionResult, RollbackResult
from training.registry import CHALLENGER, CHAMPION, ModelRegistry, VersionInfo

__all__ = ["ModelCard", "ModelDesk", "ModelOps", "gate_rows"]

_HEADLINE = [m for task in METRIC_DIRECTIONS.values() for m in task]


class ModelOps(Protocol):
    """What the wiring provides: the registry and the CLI's promote/rollback."""

    def registry(self) -> ModelRegistry:
        """The project's model registry."""
        ...

    def marker(self) -> Hashable:
        """A token that changes whenever the registry or the alias history is written."""
        ...

    def promote(
        self, name: str, *, version: str | None, force: bool, reason: str, actor: str, role: str
    ) -> PromotionResult:
        """Re-score and promote behind the gates (``tagsmith models promote``)."""
        ...

    def rollback(self, name: str, *, reason: str, actor: str, role: str) -> RollbackResult:
        """Restore the previous champion (``tagsmith models rollback``)."""
        ...


def _when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M")


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(number) else f"{number:.4f}"


def gate_rows(gates: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Display rows of a gate table (as recorded with a promotion or returned by one)."""
    rows = []
    for g in gates:
        candidate, reference = g.get("candidate"), g.get("reference")
        try:
            delta = f"{float(candidate) - float(reference):+.4f}"  # type: ignore[arg-type]
        except (TypeError, ValueError):
            delta = "-"
        rows.append(
            {
                "metric": str(g.get("metric", "")),
                "candidate": _num(candidate),
                "reference_name": str(g.get("reference_name", "")),
                "reference": _num(reference),
                "delta": delta,
                "allowed": _num(g.get("allowed")),
                "passed": "PASS" if g.get("passed") else "FAIL",
            }
        )
    return rows


def _headline(info: VersionInfo, limit: int = 4) -> str:
    keys = [k for k in _HEADLINE if k in info.metrics] or sorted(info.metrics)
    return ", ".join(f"{k}={info.metrics[k]:.4g}" for k in keys[:limit]) or "-"


@dataclass(frozen=True)
class ModelCard:
    """Everything the models pages show of one registered model.

    Attributes:
        name: Registered model name.
        tag_id: The catalogued tag it produces (``None``: none).
        champion: Version behind the champion alias.
        challenger: Version behind the challenger alias.
        versions: Display rows of every version, newest first.
        history: Display rows of the alias history, newest first.
        gates: The gate table recorded with the last promotion (display rows).
        gates_at: When that promotion happened.
        rollback_to: The version a rollback would restore.
        updated: Last registry update.
    """

    name: str
    tag_id: str | None
    champion: str | None
    challenger: str | None
    versions: list[dict[str, str]] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    gates: list[dict[str, str]] = field(default_factory=list)
    gates_at: str = ""
    rollback_to: str | None = None
    updated: str = ""


class ModelDesk:
    """Model cards (cached per registry state) and promotion/rollback for the console.

    Args:
        ops: Registry access and the promote/rollback functions.
        model_tags: Registered model name -> the catalogued tag it produces.
    """

    def __init__(self, ops: ModelOps, model_tags: Mapping[str, str]) -> None:
        self.ops = ops
        self.model_tags = dict(model_tags)
        self._cache: dict[str, Any] = {}
        self._marker: Hashable = None
        self._lock = threading.Lock()

    def _fresh(self) -> None:
        marker = self.ops.marker()
        if marker != self._marker:
            with self._lock:
                self._cache = {}
                self._marker = marker

    def names(self) -> list[str]:
        """Every registered model name."""
        self._fresh()
        cached = self._cache.get("names")
        if cached is None:
            cached = [m.name for m in self.ops.registry().list_models()]
            self._cache["names"] = cached
        return list(cached)

    def card(self, name: str) -> ModelCard:
        """The card of ``name`` (read once per registry state).

        Raises:
            RegistryError: No such registered model.
        """
        self._fresh()
        key = f"card:{name}"
        cached = self._cache.get(key)
        if cached is None:
            cached = self._read(name)
            self._cache[key] = cached
        return cached

    def _read(self, name: str) -> ModelCard:
        registry = self.ops.registry()
        registry.sync_history(name)
        versions = registry.versions(name)
        aliases = registry.aliases(name)
        events = registry.history.events(name)
        promotions = [e for e in events if e.alias == CHAMPION and e.details.get("gates")]
        last = promotions[-1] if promotions else None
        history = [
            {
                "alias": s.alias,
                "version": f"v{s.version}",
                "from": _when(s.start),
                "to": "now" if s.end is None else _when(s.end),
                "actor": s.actor,
                "action": s.action,
                "reason": s.reason or "",
            }
            for s in reversed(registry.history.intervals(name))
        ]
        rows = [
            {
                "version": f"v{v.version}",
                "aliases": ", ".join(v.aliases),
                "registered": _when(v.created_at),
                "by": v.user or "",
                "metrics": _headline(v),
            }
            for v in versions
        ]
        return ModelCard(
            name=name,
            tag_id=self.model_tags.get(name),
            champion=aliases.get(CHAMPION),
            challenger=aliases.get(CHALLENGER),
            versions=rows,
            history=history,
            gates=gate_rows(last.details.get("gates", [])) if last else [],
            gates_at=_when(last.at) if last else "",
            rollback_to=registry.history.rollback_target(name, CHAMPION),
            updated=rows[0]["registered"] if rows else "",
        )

    def visible_to(self, visible_tags: frozenset[str], may_operate: bool) -> list[str]:
        """Models a role may see: those producing a tag it reads (operators see all)."""
        out = []
        for name in self.names():
            tag = self.model_tags.get(name)
            if (tag is not None and tag in visible_tags) or (tag is None and may_operate):
                out.append(name)
        return out

    def promote_work(
        self, name: str, *, version: str | None, force: bool, reason: str, actor: str, role: str
    ) -> Callable[[], dict[str, Any]]:
        """The job body of a promotion: its outcome as display data."""

        def work() -> dict[str, Any]:
            result = self.ops.promote(
                name, version=version, force=force, reason=reason, actor=actor, role=role
            )
            self._fresh()
            return {
                "candidate": result.candidate,
                "previous": result.previous_champion,
                "promoted": result.promoted,
                "forced": result.forced,
                "against": result.report.against,
                "window": dict(result.window),
                "gates": gate_rows(
                    [
                        {
                            "metric": o.metric,
                            "candidate": o.candidate,
                            "reference": o.reference,
                            "reference_name": o.reference_name,
                            "allowed": o.allowed,
                            "passed": o.passed,
                        }
                        for o in result.report.outcomes
                    ]
                ),
            }

        return work

    def rollback_work(
        self, name: str, *, reason: str, actor: str, role: str
    ) -> Callable[[], dict[str, Any]]:
        """The job body of a rollback."""

        def work() -> dict[str, Any]:
            result = self.ops.rollback(name, reason=reason, actor=actor, role=role)
            return {"from": result.from_version, "to": result.to_version}

        return work
