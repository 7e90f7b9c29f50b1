"""Governance commands: ``tags lint`` (redundant and dead tags, with suggested merges)
and ``customers erase`` (the right to erasure).

They join the ``tags`` and ``customers`` groups assembled in :mod:`tagsmith.cli`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from features.crypto import generate_key
from tags.audit import default_actor
from tagsmith.cli._common import console, format_option, pass_project, print_columns
from tagsmith.cli._governance import (
    lint_findings,
    make_reader,
    require,
    resolve_role,
    role_option,
)
from tagsmith.encryption import encryption_status, rewrite_under_current_key
from tagsmith.erasure import erase_customers
from tagsmith.project import Project

__all__ = ["COMMANDS", "STORE_COMMANDS", "consent_group", "erase_cmd"]


@click.command("lint")
@format_option
@click.option("--strict", is_flag=True, help="Exit 1 when anything is found (for CI).")
@pass_project
def lint_cmd(project: Project, fmt: str, strict: bool) -> None:
    """Tags that overlap, have near-duplicate names, or stayed empty or constant.

    Overlap is the Jaccard of two tag values' customers in each of the last
    ``governance.lint.runs`` snapshots; names are compared within a category once the
    category prefix is removed. Thresholds: ``governance.lint`` in tagsmith.yaml.
    """
    findings = lint_findings(project)
    cfg = project.config.governance.lint
    if fmt == "json":
        click.echo(json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=2))
    elif not findings:
        console.print(
            f"No redundant or dead tags (Jaccard < {cfg.jaccard:g}, name similarity < "
            f"{cfg.name_similarity:g}, nothing empty or constant for {cfg.runs} runs).",
            soft_wrap=True,
        )
    else:
        rows = [("kind", "tags", "score", "finding", "suggestion")]
        rows += [
            (f.kind, " ~ ".join(f.tags), f"{f.score:.3g}", f.detail, f.suggestion) for f in findings
        ]
        print_columns(rows)
        console.print(f"{len(findings)} finding(s)")
    if strict and findings:
        raise SystemExit(1)


@click.command("erase")
@click.argument("customer_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", is_flag=True, help="Erase (without it, nothing is changed).")
@format_option
@role_option
@pass_project
def erase_cmd(
    project: Project, customer_ids: tuple[str, ...], yes: bool, fmt: str, role: str | None
) -> None:
    """Erase customers everywhere: facts, features, tag history, deliveries (on request).

    The audit log and the erasure register keep a keyed hash of each id, never the id;
    later imports of the id are quarantined as 'erased'. Backups taken before are
    listed: they still hold the customer until they expire (a restore erases again).
    """
    role = resolve_role(project, role)
    require(project, role, "erase", query=f"customers erase ({len(customer_ids)} id(s))")
    if not yes:
        console.print(
            f"would erase {len(customer_ids)} customer(s) from every store; re-run with --yes"
        )
        return
    report = erase_customers(project, list(customer_ids), role=role, now=pd.Timestamp.now(tz="UTC"))
    if fmt == "json":
        click.echo(json.dumps(asdict(report), indent=2))
        return
    console.print(f"erased {len(customer_ids)} customer(s) (audit: {', '.join(report.hashes)})")
    print_columns([("store", "removed")] + [(k, f"{v:,}") for k, v in report.removed.items()])
    for path in report.older_backups:
        console.print(f"  still held by the older backup {path}", markup=False, soft_wrap=True)


@click.command("new-key")
def new_key_cmd() -> None:
    """Print a new random 256-bit key for encryption at rest (store it outside the project).

    \b
    Use it as TAGSMITH_ENCRYPTION_KEY, or in a key file named by
    governance.encryption.key_file; to rotate, give NEW,OLD and run 'store encrypt'.
    """
    click.echo(generate_key())


@click.command("encryption")
@format_option
@pass_project
def encryption_cmd(project: Project, fmt: str) -> None:
    """Whether each store is encrypted at rest, and under which key."""
    status = encryption_status(project)
    if fmt == "json":
        click.echo(json.dumps(asdict(status), indent=2))
        return
    if status.key_id is None:
        console.print(
            "No encryption key configured: the stores are written unencrypted "
            f"(set ${project.config.governance.encryption.key_env} or "
            "governance.encryption.key_file; make a key with 'tagsmith store new-key')."
        )
    else:
        console.print(f"Encryption at rest with key {status.key_id}.")
    rows = [("store", "state")]
    for store, counts in status.stores.items():
        rows.append((store, ", ".join(f"{n} {what}" for what, n in counts.items() if n)))
    print_columns(rows)
    if status.key_id and status.plain_files:
        console.print("Some files are not under the current key: run 'tagsmith store encrypt'.")


@click.command("encrypt")
@role_option
@pass_project
def encrypt_cmd(project: Project, role: str | None) -> None:
    """Rewrite every store under the current key (first encryption, or key rotation)."""
    role = resolve_role(project, role)
    require(project, role, "backup", query="store encrypt")
    done = rewrite_under_current_key(project)
    keys = project.encryption_keys()
    project.audit_log().append(
        action="encrypt",
        role=role,
        query="store encrypt",
        extra={"key_id": keys.current_id if keys else None, "rewritten": done},
    )
    print_columns([("store", "rewritten")] + [(k, str(v)) for k, v in done.items()])
    console.print(f"Every store is now under key {keys.current_id if keys else '?'}.")


STORE_COMMANDS = [new_key_cmd, encryption_cmd, encrypt_cmd]


def _review_material(project: Project, tag_id: str, sample: int) -> dict[str, Any]:
    """Sizes now (newest snapshot) and under the definition to apply, and a sample."""
    from features.events import prepare_events
    from tags.engine import evaluate_tags

    store = project.tag_store()
    facts = project.fact_store()
    as_of = store.latest_as_of() if store.exists() else None
    if as_of is None or not facts.exists():
        return {"as_of": None, "before": {}, "after": {}, "sample": []}
    current = store.snapshot(as_of, tags=[tag_id])
    prepared = prepare_events(facts.load_customers(), facts.load_events())
    frame = prepared.build_features(as_of, spec=project.feature_spec())
    new = evaluate_tags(frame, prepared, project.catalogue(), as_of=as_of, tag_ids=[tag_id])
    new = new[new["tag_id"] == tag_id]
    before = current.groupby("value").size().astype(int).to_dict()
    after = new.groupby("value", observed=True).size().astype(int).to_dict()
    was = dict(zip(current["customer_id"].astype(str), current["value"].astype(str), strict=True))
    picked = new.sample(min(sample, len(new)), random_state=0) if len(new) else new
    rows = [
        {"customer_id": str(c), "value": str(v), "current": was.get(str(c))}
        for c, v in zip(picked["customer_id"], picked["value"], strict=True)
    ]
    return {"as_of": f"{as_of:%Y-%m-%d}", "before": before, "after": after, "sample": rows}


@click.command("review")
@click.argument("tag_id")
@click.option("--approve", "decision", flag_value="approved", help="Sign off this definition.")
@click.option("--reject", "decision", flag_value="rejected", help="Refuse this definition.")
@click.option("--sample", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--note", default="", help="Why (kept with the decision).")
@role_option
@pass_project
def review_cmd(
    project: Project,
    tag_id: str,
    decision: str | None,
    sample: int,
    note: str,
    role: str | None,
) -> None:
    """Show a review-required tag's change (sizes, a sample), then --approve or --reject it.

    The decision is bound to the definition's fingerprint: editing it again needs a new
    sign-off. Needs the 'review' action; recorded in the audit log.
    """
    role = resolve_role(project, role)
    tag = project.catalogue().get(tag_id)
    require(project, role, "review", query=f"tags review {tag_id}")
    reader = make_reader(project, role)
    reader.authorise("read", [tag_id], f"tags review {tag_id}")
    material = _review_material(project, tag_id, sample)
    console.print(
        f"{tag.id} v{tag.version} ({tag.display_name}), review: {tag.review}; fingerprint "
        f"{tag.fingerprint()[:12]}",
        markup=False,
    )
    if material["as_of"]:
        values = sorted(set(material["before"]) | set(material["after"]))
        rows = [("value", f"now ({material['as_of']})", "with this definition", "change")]
        for v in values:
            b, a = material["before"].get(v, 0), material["after"].get(v, 0)
            rows.append((v, f"{b:,}", f"{a:,}", f"{a - b:+,}"))
        print_columns(rows)
        console.print(f"sample of {len(material['sample'])} customer(s) it would tag:")
        for r in material["sample"]:
            console.print(
                f"  {r['customer_id']}: {r['value']} (now {r['current'] or '-'})", markup=False
            )
    else:
        console.print("no tag snapshot and facts yet: sizes cannot be compared")
    if decision is None:
        console.print("re-run with --approve or --reject to record your decision")
        return
    if tag.review != "required":
        console.print(f"note: {tag_id} does not require review; the decision is recorded anyway")
    entry = {
        "tag_id": tag_id,
        "version": tag.version,
        "fingerprint": tag.fingerprint(),
        "decision": decision,
        "reviewer": default_actor(),
        "role": role,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sample_size": len(material["sample"]),
        "sizes_before": material["before"],
        "sizes_after": material["after"],
        "note": note,
    }
    project.reviews().record(entry)
    project.audit_log().append(
        role=role,
        action="review",
        tags=[tag_id],
        query=f"tags review {tag_id} v{tag.version}: {decision}",
        extra={k: v for k, v in entry.items() if k not in ("tag_id", "role")},
    )
    console.print(f"{decision} {tag_id} v{tag.version} as {default_actor()} ({role})")


@click.group("consent")
def consent_group() -> None:
    """Customers' consent per purpose (governance.consent.purposes): import, show."""


@consent_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@role_option
@pass_project
def consent_import_cmd(project: Project, file: Path, role: str | None) -> None:
    """Add consent records from a CSV: customer_id, purpose, granted (yes/no), at (optional).

    Rows that fail are listed (line, field, expected, got) and not added; the latest
    record per customer and purpose wins.
    """
    role = resolve_role(project, role)
    require(project, role, "consent", query=f"consent import {file.name}")
    book = project.consent()
    if not book.enabled:
        raise click.UsageError(
            "No purposes are declared: add them under governance.consent.purposes in "
            f"{project.config_path} first."
        )
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    result = book.import_frame(frame, source=str(file), now=pd.Timestamp.now(tz="UTC"))
    project.audit_log().append(
        role=role,
        action="consent",
        n_customers=result.accepted,
        query=f"consent import {file.name}",
        extra={"accepted": result.accepted, "rejected": len(result.rejected)},
    )
    for reason in result.rejected:
        console.print(f"  rejected: {reason}", markup=False, soft_wrap=True)
    console.print(
        f"imported {result.accepted:,} consent record(s), {len(result.rejected)} rejected"
    )


@consent_group.command("show")
@format_option
@role_option
@pass_project
def consent_show_cmd(project: Project, fmt: str, role: str | None) -> None:
    """Per declared purpose: its default and how many customers granted or refused it."""
    require(project, resolve_role(project, role), "read", query="consent show")
    summary = project.consent().summary()
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [("purpose", "default", "granted", "refused")]
    rows += [
        (
            p,
            "granted" if s["default_granted"] else "refused",
            f"{s['granted']:,}",
            f"{s['refused']:,}",
        )
        for p, s in summary.items()
    ]
    print_columns(rows)


COMMANDS = [lint_cmd, review_cmd]
