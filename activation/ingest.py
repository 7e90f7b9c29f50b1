"""From transitions to queued deliveries: the applied triggers judge each new group.

The source of work is the tag store's transition log, read from the outbox's cursor:
each group recorded since (a batch run's changes, or live changes) is judged by the
trigger definitions in force when it was recorded, and the items it fires are queued
together with the cursor past it, in one outbox transaction. Nothing here is called by
the writers of the log; a crash anywhere re-reads the same group and queues the same
idempotency keys (ignored when already queued).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from activation.definitions import Trigger, check_expression
from activation.evaluate import fire, trigger_items
from activation.outbox import Item, Outbox
from activation.versions import AppliedVersion, version_for
from tags.audit import AuditLog
from tags.errors import AccessDenied
from tags.policy import AccessPolicy, tag_infos
from tags.rules import Rule
from tags.segments import compile_audience
from tags.transitions import TransitionGroup, TransitionLog

__all__ = ["ACTOR", "CompiledTrigger", "IngestReport", "compile_trigger", "ingest"]

log = logging.getLogger("activation")
ACTOR = "tagsmith-activation"


@dataclass(frozen=True)
class CompiledTrigger:
    """A trigger ready to judge groups.

    Attributes:
        trigger: Its definition.
        version: The applied version it belongs to.
        rule: Its compiled expression.
        watch: Tags whose changes can fire it (the expression's tags).
        tags: Every tag read (expression and include).
        boolean_tags: Which of ``tags`` are boolean.
    """

    trigger: Trigger
    version: int
    rule: Rule
    watch: list[str]
    tags: list[str]
    boolean_tags: frozenset[str]


def compile_trigger(trigger: Trigger, version: int, catalogue: Any) -> CompiledTrigger:
    """Compile a trigger's expression against the catalogue.

    Raises:
        RuleError: The expression no longer compiles (e.g. a tag was removed).
        DefinitionError: It reads scores.
    """
    watch = check_expression(trigger.expression, catalogue)
    rule, _ = compile_audience(trigger.expression, catalogue)
    tags = sorted(set(watch) | set(trigger.include))
    boolean = frozenset(
        t.id
        for t in tag_infos(catalogue)
        if t.id in tags and getattr(t, "value_type", "") == "boolean"
    )
    return CompiledTrigger(trigger, version, rule, watch, tags, boolean)


@dataclass
class IngestReport:
    """What one ingest pass did.

    Attributes:
        groups: Groups processed.
        fired: Trigger name -> customers fired for.
        queued: New items queued.
        skipped: Trigger name -> why it was skipped (role no longer allowed, ...).
        cursor: The cursor after the pass.
        consent_excluded: Trigger name -> customers left out for lack of consent.
    """

    groups: int = 0
    fired: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    cursor: int = 0
    consent_excluded: dict[str, int] = field(default_factory=dict)


Consent = Callable[[str, Sequence[str]], np.ndarray]


def _usable(
    ct: CompiledTrigger, policy: AccessPolicy, catalogue: Any, audit: AuditLog, report: IngestReport
) -> bool:
    """The policy may have changed since apply: re-check the trigger's role (audited)."""
    name = ct.trigger.name
    try:
        policy.check(ct.trigger.role, ct.tags, catalogue)
    except AccessDenied as exc:
        if name not in report.skipped:
            report.skipped[name] = str(exc)
            audit.append(
                actor=ACTOR,
                role=ct.trigger.role,
                action="denied",
                tags=ct.tags,
                query=f"trigger {name}",
                extra={"requested_action": "trigger", "reason": str(exc)},
            )
        return False
    return True


def _judge(
    group: TransitionGroup,
    version: AppliedVersion,
    compiled: Callable[[Trigger, int], CompiledTrigger | None],
    *,
    transitions: TransitionLog,
    policy: AccessPolicy,
    catalogue: Any,
    audit: AuditLog,
    report: IngestReport,
    consent: Consent | None = None,
) -> list[Item]:
    items: list[Item] = []
    for trigger in version.definitions.triggers.values():
        if trigger.status != "active":
            continue
        ct = compiled(trigger, version.version)
        if ct is None or not _usable(ct, policy, catalogue, audit, report):
            continue
        states = transitions.states(group, watch=ct.watch, tags=ct.tags)
        firing = fire(trigger, ct.rule, states, tags=ct.tags, boolean_tags=ct.boolean_tags)
        fired = trigger_items(
            trigger, version.version, firing, group_id=group.group_id, as_of=group.as_of
        )
        excluded = 0
        if consent is not None and fired:
            # Customers who did not consent to the trigger's purpose are left out.
            ok = consent(trigger.purpose, [cid for _, cid, _ in fired])
            excluded = int((~ok).sum())
            fired = [f for f, keep in zip(fired, ok, strict=True) if keep]
            if excluded:
                report.consent_excluded[trigger.name] = (
                    report.consent_excluded.get(trigger.name, 0) + excluded
                )
        if not fired and not excluded:
            continue
        report.fired[trigger.name] = report.fired.get(trigger.name, 0) + len(fired)
        items.extend(
            Item(key, "trigger", trigger.name, version.version, trigger.destination, cid, body)
            for key, cid, body in fired
        )
        audit.append(
            actor=ACTOR,
            role=trigger.role,
            action="trigger_fire",
            tags=ct.tags,
            n_customers=len(fired),
            query=f"trigger {trigger.name} v{version.version}: {trigger.expression}",
            extra={
                "group": group.group_id,
                "source": group.source,
                "change": trigger.change,
                "candidates": firing.candidates,
                "purpose": trigger.purpose,
                "destination": trigger.destination,
                "consent_excluded": excluded,
            },
        )
    return items


def ingest(
    transitions: TransitionLog,
    outbox: Outbox,
    versions: list[AppliedVersion],
    *,
    policy: AccessPolicy,
    catalogue: Any,
    audit: AuditLog,
    max_groups: int = 100,
    consent: Consent | None = None,
) -> IngestReport:
    """Judge the groups recorded after the outbox's cursor and queue what they fire.

    Args:
        transitions: The tag store's transition log.
        outbox: The outbox (cursor and queue).
        versions: Every applied version, oldest first.
        policy: The access policy (trigger roles are re-checked).
        catalogue: The tag catalogue (expressions compile against it).
        audit: Where firings and refusals are recorded.
        max_groups: Groups processed in this pass at most.
        consent: Who may be used for a purpose (None: not checked).
    """
    report = IngestReport(cursor=outbox.cursor())
    last = transitions.last_seq()
    if last < report.cursor:
        # The tag store went back in time (restored from a backup): follow it.
        log.warning(
            "tag store transitions end at %d, before the outbox cursor %d; cursor moved back",
            last,
            report.cursor,
        )
        outbox.set_cursor(last)
        report.cursor = last
    if last == report.cursor:
        return report
    cache: dict[tuple[str, int], CompiledTrigger | None] = {}

    def compiled(trigger: Trigger, version: int) -> CompiledTrigger | None:
        key = (trigger.name, version)
        if key not in cache:
            try:
                cache[key] = compile_trigger(trigger, version, catalogue)
            except Exception as exc:  # a catalogue change broke it: skip, say why
                report.skipped[trigger.name] = str(exc)
                log.error("trigger %s v%d no longer compiles: %s", trigger.name, version, exc)
                cache[key] = None
        return cache[key]

    for group in transitions.groups(report.cursor, limit=max_groups):
        version = version_for(versions, group.after_seq)
        items: list[Item] = []
        if version is not None:
            items = _judge(
                group,
                version,
                compiled,
                transitions=transitions,
                policy=policy,
                catalogue=catalogue,
                audit=audit,
                report=report,
                consent=consent,
            )
        report.queued += outbox.enqueue(items, cursor=group.last_seq)
        report.groups += 1
        report.cursor = group.last_seq
    return report
