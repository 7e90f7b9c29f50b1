"""``tagsmith triggers add|list|plan|apply|test``: governed trigger and sync definitions.

Triggers fire when customers enter or leave an audience expression; audience syncs keep
a destination's copy of a saved audience in step. Definitions live in
``triggers/*.yaml`` and are planned and applied like the tag catalogue; the dispatcher
(``tagsmith triggers run``, the service, or the pass after ``tags run``) delivers what
they queue (``tagsmith.cli.delivery``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click
import yaml

from activation.definitions import (
    AudienceSync,
    Definitions,
    FileDestination,
    Trigger,
    WebhookDestination,
    load_definitions,
)
from activation.delivery import WebhookSender
from activation.errors import DefinitionError
from activation.evaluate import fire, trigger_items
from activation.ingest import compile_trigger
from activation.outbox import Claimed
from activation.payloads import batch_body, canonical
from tags.access import TagReader
from tags.audit import default_actor
from tags.segments import select_audience
from tags.transitions import TransitionLog
from tagsmith.activate import check_project_definitions, transitions_position
from tagsmith.cli._common import console, err_console, format_option, pass_project
from tagsmith.cli._governance import (
    definition_role,
    make_reader,
    require,
    resolve_role,
    role_option,
)
from tagsmith.project import Project

__all__ = ["COMMANDS", "add", "apply", "list_cmd", "plan", "test"]


# ---------------------------------------------------------------------------- add
def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _destination(
    name: str, opts: dict[str, Any], purpose: str, owner: str
) -> WebhookDestination | FileDestination:
    common: dict[str, Any] = {"name": name, "owner": owner, "purpose": purpose}
    if opts["webhook"]:
        extra = {
            k: v
            for k, v in (
                ("secret_env", opts["secret_env"]),
                ("batch_size", opts["batch_size"]),
                ("rate_limit_per_s", opts["rate_limit"]),
            )
            if v is not None
        }
        return WebhookDestination(type="webhook", url=opts["webhook"], **common, **extra)
    return FileDestination(type="file", path=opts["drop"], format=opts["file_format"], **common)


def _dump(item: Any, keep: tuple[str, ...]) -> dict[str, Any]:
    data = item.model_dump(mode="json", exclude_defaults=True)
    full = item.model_dump(mode="json")
    return {**{k: full[k] for k in keep if k in full}, **data}


@click.command()
@click.argument("name")
@click.option("--on-enter", metavar="EXPR", help="Fire when a customer enters this audience.")
@click.option("--on-exit", metavar="EXPR", help="Fire when a customer leaves this audience.")
@click.option("--audience", metavar="SAVED", help="Sync this saved audience (full, then changes).")
@click.option("--webhook", metavar="URL", help="Deliver to this webhook (a new destination).")
@click.option(
    "--drop", metavar="DIR", help="Drop list files in this folder, relative to the project (syncs)."
)
@click.option("--file-format", type=click.Choice(["csv", "parquet"]), default="csv")
@click.option("--destination", "existing", metavar="NAME", help="Deliver to a defined destination.")
@click.option("--secret-env", metavar="VAR", help="Environment variable holding the HMAC secret.")
@click.option("--include", metavar="TAGS", help="Comma-separated tags whose values are sent.")
@click.option("--purpose", default="marketing", show_default=True, help="Why the data is used.")
@click.option("--owner", default=None, help="Owner (default: you).")
@click.option("--description", default="", help="What it is for.")
@click.option("--status", type=click.Choice(["draft", "active", "paused"]), default="active")
@click.option("--batch-size", type=int, default=None, help="Events per webhook request.")
@click.option("--rate-limit", type=float, default=None, help="Events per second at most.")
@click.option("--replace", is_flag=True, help="Overwrite triggers/NAME.yaml (version goes up).")
@click.option(
    "--role",
    default=None,
    metavar="ROLE",
    help="Policy role the trigger acts for when it fires (default: $TAGSMITH_ROLE, then "
    "access.default_role).",
)
@pass_project
def add(project: Project, name: str, role: str | None, **opts: Any) -> None:
    """Define trigger (or audience sync) NAME in triggers/NAME.yaml; apply it to take effect.

    \b
    tagsmith triggers add winback --on-enter "lifecycle_stage = 'dormant' and old_customer" \\
        --webhook https://crm.example.com/hooks --secret-env CRM_SECRET --include rfm_segment
    """
    kinds = [k for k in ("on_enter", "on_exit", "audience") if opts[k]]
    targets = [k for k in ("webhook", "drop", "existing") if opts[k]]
    if len(kinds) != 1:
        raise click.UsageError("Expected exactly one of --on-enter, --on-exit and --audience.")
    if len(targets) != 1:
        raise click.UsageError("Expected exactly one of --webhook, --drop and --destination.")
    path = project.triggers_dir / f"{name}.yaml"
    defs = load_definitions(project.triggers_dir)
    old_version = _owned_version(defs, str(path), name)
    if path.exists() and not opts["replace"]:
        raise DefinitionError(f"{path} exists already. Pass --replace to overwrite it.")
    role = definition_role(project, role)
    owner = opts["owner"] or default_actor()
    version = old_version + 1 if old_version else 1
    common = {
        "name": name,
        "description": opts["description"],
        "owner": owner,
        "purpose": opts["purpose"],
        "version": version,
        "role": role,
        "status": opts["status"],
        "include": _csv(opts["include"]),
        "destination": opts["existing"] or name,
    }
    item: Trigger | AudienceSync
    if opts["audience"]:
        item = AudienceSync(audience=opts["audience"], **common)
    else:
        item = Trigger(on_enter=opts["on_enter"], on_exit=opts["on_exit"], **common)
    new = Definitions()
    for kind in ("destinations", "triggers", "syncs"):
        for n, it in defs.kind(kind).items():
            if defs.files.get((kind, n)) != str(path):
                new.kind(kind)[n] = it
                new.files[(kind, n)] = defs.files[(kind, n)]
    data: dict[str, Any] = {}
    if not opts["existing"]:
        if name in new.destinations:
            raise DefinitionError(
                f"Destination {name!r} is defined in {new.files[('destinations', name)]}: pass "
                f"--destination {name} to use it."
            )
        dest = _destination(name, opts, opts["purpose"], owner)
        dest = dest.model_copy(update={"version": version})
        new.destinations[name] = dest
        data["destinations"] = [_dump(dest, ("name", "type", "purpose", "version"))]
    kind = "syncs" if isinstance(item, AudienceSync) else "triggers"
    new.kind(kind)[name] = item
    new.files[(kind, name)] = str(path)
    data[kind] = [_dump(item, ("name", "role", "status", "purpose", "version"))]
    _, check = check_project_definitions(project, definitions=new)
    mine = [p for p in check.problems if str(path) in p or f"'{name}'" in p]
    if mine:
        raise DefinitionError(f"{name} was not written:\n" + "\n".join(f"  {p}" for p in mine))
    project.triggers_dir.mkdir(parents=True, exist_ok=True)
    text = (
        f"# {kind[:-1]} {name}: tagsmith triggers plan / apply to take effect\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    for warning in check.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    console.print(
        f"written {path} ({kind[:-1]} v{version}); next: tagsmith triggers plan, apply",
        soft_wrap=True,
    )


def _owned_version(defs: Definitions, path: str, name: str) -> int:
    versions = [
        it.version
        for kind, n, it in defs.items()
        if n == name and defs.files.get((kind, n)) == path
    ]
    return max(versions, default=0)


# ---------------------------------------------------------------------------- list, plan, apply
@click.command("list")
@format_option
@pass_project
def list_cmd(project: Project, fmt: str) -> None:
    """Triggers and syncs: definition, applied version, deliveries per state."""
    defs = load_definitions(project.triggers_dir)
    applied = project.trigger_history().load()
    counts: dict[str, dict[str, int]] = {}
    if project.outbox_path.exists():
        for row in project.outbox().counts():
            counts.setdefault(row["source"], {})[row["state"]] = row["n"]
    rows = []
    for kind in ("triggers", "syncs"):
        for name, item in sorted(defs.kind(kind).items()):
            live = applied.definitions.kind(kind).get(name) if applied else None
            rows.append(
                {
                    "name": name,
                    "kind": kind[:-1],
                    "status": item.status,
                    "version": item.version,
                    "applied": f"v{live.version} {live.status}" if live else "not applied",
                    "when": (
                        f"on {item.change[:-1] if item.change == 'entered' else 'exit'}: "
                        f"{item.expression}"
                        if isinstance(item, Trigger)
                        else f"audience {item.audience}"
                    ),
                    "destination": item.destination,
                    "purpose": item.purpose,
                    "role": item.role,
                    "deliveries": counts.get(name, {}),
                }
            )
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        console.print(
            "no triggers: tagsmith triggers add NAME --on-enter EXPR --webhook URL", soft_wrap=True
        )
        return
    for r in rows:
        d = r["deliveries"]
        console.print(
            f"[bold]{r['name']}[/]  {r['kind']}  {r['status']} v{r['version']} "
            f"(applied: {r['applied']})  -> {r['destination']}  purpose {r['purpose']}, "
            f"role {r['role']}",
            soft_wrap=True,
        )
        console.print(f"  {r['when']}", markup=False, soft_wrap=True)
        console.print(
            f"  deliveries: {d.get('delivered', 0):,} delivered, "
            f"{d.get('pending', 0) + d.get('batched', 0):,} waiting, {d.get('dead', 0):,} dead",
            soft_wrap=True,
        )


def _print_plan(project: Project) -> tuple[Any, Any, Any]:
    defs, check = check_project_definitions(project)
    history = project.trigger_history()
    plan = history.plan(defs, check)
    consent = project.config.governance.consent
    if consent.purposes:
        # Consent is checked per purpose: one nobody declared cannot be checked.
        for kind in ("triggers", "syncs", "destinations"):
            for name, item in defs.kind(kind).items():
                if item.purpose not in consent.purposes:
                    plan.problems.append(
                        f"{defs.where(kind, name)}: expected a purpose declared in "
                        f"governance.consent.purposes ({sorted(consent.purposes)}). "
                        f"Got {item.purpose!r}."
                    )
    base = f"v{plan.base_version}" if plan.base_version else "none"
    n = {k: len(defs.kind(k)) for k in ("triggers", "syncs", "destinations")}
    console.print(
        f"{n['triggers']} triggers, {n['syncs']} syncs, {n['destinations']} destinations in "
        f"{project.triggers_dir}; last applied: {base}",
        soft_wrap=True,
    )
    for change in plan.changes:
        console.print("  " + change.describe(), markup=False, soft_wrap=True)
    if plan.empty:
        console.print("  no changes", soft_wrap=True)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    for problem in plan.problems:
        err_console.print(f"[bold red]problem:[/] {problem}", soft_wrap=True)
    return defs, check, plan


@click.command()
@pass_project
def plan(project: Project) -> None:
    """What apply would record: added, removed, changed; problems refuse it (exit 1)."""
    _, _, result = _print_plan(project)
    if result.problems:
        raise SystemExit(1)


@click.command()
@role_option
@pass_project
def apply(project: Project, role: str | None) -> None:
    """Record the definitions as a new version; they fire on transitions recorded from now."""
    role = resolve_role(project, role)
    require(project, role, "catalogue", query="triggers apply")
    defs, check, result = _print_plan(project)
    if result.problems:
        project.audit_log().append(
            actor=default_actor(),
            role=role,
            action="denied",
            query="triggers apply",
            extra={"requested_action": "trigger_apply", "reason": result.problems},
        )
        raise SystemExit(1)
    position = transitions_position(project)
    version, done = project.trigger_history().apply(
        defs, check, position=position, applied_at=datetime.now(UTC), applied_by=default_actor()
    )
    if done.empty and done.base_version is not None:
        console.print(f"nothing to apply: v{version} is current", soft_wrap=True)
        return
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="trigger_apply",
        tags=sorted({t for tr in defs.triggers.values() for t in tr.include}),
        query=f"triggers apply v{version}",
        extra={"changes": [c.describe() for c in done.changes], "position": position},
    )
    console.print(
        f"applied triggers v{version}: fires on transitions recorded after seq {position:,}",
        soft_wrap=True,
    )


# ---------------------------------------------------------------------------- test
@click.command()
@click.argument("name")
@click.option("--group", "group_id", default=None, help="Transition group (run id); default: last.")
@click.option("--send", is_flag=True, help="Also POST one signed test event to the destination.")
@role_option
@pass_project
def test(project: Project, name: str, group_id: str | None, send: bool, role: str | None) -> None:
    """Dry-run NAME from triggers/*.yaml on recorded transitions; nothing is queued."""
    defs = load_definitions(project.triggers_dir)
    reader = make_reader(project, role)
    if name in defs.syncs:
        _test_sync(project, defs.syncs[name], reader)
    elif name in defs.triggers:
        _test_trigger(project, defs.triggers[name], reader, group_id)
    else:
        raise DefinitionError(
            f"Expected a trigger or sync name "
            f"({', '.join(sorted([*defs.triggers, *defs.syncs])) or 'none defined'}). "
            f"Got {name!r}."
        )
    if send:
        _send_test(defs, name)


def _test_trigger(
    project: Project, trigger: Trigger, reader: TagReader, group_id: str | None
) -> None:
    ct = compile_trigger(trigger, trigger.version, reader.catalogue)
    query = f"triggers test {trigger.name}"
    reader.authorise("audience", ct.tags, query)
    log = TransitionLog(reader.store)
    groups = log.groups(0, limit=1_000_000)
    if group_id is not None:
        groups = [g for g in groups if g.group_id == group_id]
    if not groups:
        console.print(
            "no transitions recorded yet (the second tags run records the first)", soft_wrap=True
        )
        return
    group = groups[-1]
    states = log.states(group, watch=ct.watch, tags=ct.tags)
    firing = fire(trigger, ct.rule, states, tags=ct.tags, boolean_tags=ct.boolean_tags)
    items = trigger_items(
        trigger, trigger.version, firing, group_id=group.group_id, as_of=group.as_of
    )
    reader.record("audience", tags=ct.tags, n_customers=len(items), query=query)
    console.print(
        f"group {group.group_id} ({group.source}, as of {group.as_of:%Y-%m-%d}, "
        f"{group.n:,} transitions): {firing.candidates:,} candidate(s), {len(items):,} would "
        f"fire ({trigger.change})",
        soft_wrap=True,
    )
    if items:
        console.print(
            "first customers: " + ", ".join(cid for _, cid, _ in items[:5]), soft_wrap=True
        )
        console.print("payload: " + items[0][2].decode("utf-8"), markup=False, soft_wrap=True)


def _test_sync(project: Project, sync: AudienceSync, reader: TagReader) -> None:
    saved = project.audiences().get(sync.audience)
    chosen = select_audience(reader, saved.expression)
    members: set[str] = set()
    if project.outbox_path.exists():
        _, _, _, members = project.outbox().sync_state(sync.name)
    current = set(chosen.customers["customer_id"].astype(str))
    if not members:
        console.print(
            f"{sync.name}: would send the full list of {len(current):,} customers", soft_wrap=True
        )
    else:
        console.print(
            f"{sync.name}: {len(current):,} members; would add {len(current - members):,} and "
            f"remove {len(members - current):,}",
            soft_wrap=True,
        )


def _send_test(defs: Definitions, name: str) -> None:
    item = defs.triggers.get(name) or defs.syncs[name]
    dest = defs.destinations.get(item.destination)
    if not isinstance(dest, WebhookDestination):
        raise DefinitionError(f"Expected {name!r} to deliver to a webhook to --send a test event.")
    event = {
        "id": f"test-{uuid.uuid4().hex[:12]}",
        "type": "test",
        "test": True,
        "trigger": name,
        "customer_id": "test-customer",
        "as_of": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tags": {t: None for t in item.include},
    }
    key = f"test-{uuid.uuid4().hex}"
    claimed = Claimed(
        0, key, dest.name, batch_body(dest.name, key, [canonical(event)]), 1, 1, (name,)
    )
    sender = WebhookSender(dest.model_copy(update={"max_attempts": 1}))
    try:
        outcome = sender.send(claimed)
    finally:
        sender.close()
    if outcome.outcome == "delivered":
        console.print(
            f"test event delivered to {dest.name}: HTTP {outcome.status} in "
            f"{outcome.duration_ms:.0f} ms",
            soft_wrap=True,
        )
    else:
        err_console.print(
            f"[bold red]test event not delivered to {dest.name}:[/] {outcome.error}", soft_wrap=True
        )
        raise SystemExit(1)


COMMANDS = [add, list_cmd, plan, apply, test]
