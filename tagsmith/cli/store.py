"""``tagsmith store``: back up and restore every store of the project."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pandas as pd

from tags.audit import default_actor
from tags.backup import create_backup, restore_backup
from tagsmith import __version__
from tagsmith.cli._common import console, pass_project
from tagsmith.cli._governance import require, resolve_role, role_option
from tagsmith.erasure import erasures_before_restore, keep_erasures
from tagsmith.project import Project


def backup_items(project: Project) -> list[Path]:
    """Everything a restore needs to bring the project back.

    The whole data folder is one item, so stores added later (catalogue versions, API
    keys, model history, ...) are backed up without being listed here.
    """
    return [
        project.config_path,
        project.feature_spec_path,
        project.catalogue_dir,
        project.policy_path,
        project.audiences_path,
        project.data_dir,
    ]


def read_audit_log(project: Project) -> tuple[bytes, bytes] | None:
    """The audit log and its head, read under the lock (None when there is no log)."""
    log = project.audit_log()
    if not log.path.exists():
        return None
    with log.lock():
        head = log.head_path.read_bytes() if log.head_path.exists() else b""
        return log.path.read_bytes(), head


def archive_audit_log(project: Project, content: tuple[bytes, bytes]) -> Path:
    """Keep the pre-restore audit log in ``data/audit-archive/``: lines are never lost."""
    folder = project.data_dir / "audit-archive"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = folder / f"audit-before-restore-{stamp}.log"
    target.write_bytes(content[0])
    if content[1]:
        target.with_name(target.name + ".head").write_bytes(content[1])
    return target


@click.group()
def store() -> None:
    """Back up and restore the project's stores (tags, facts, features, models, audit)."""


@store.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@role_option
@pass_project
def backup(project: Project, dest: Path, role: str | None) -> None:
    """Copy every store into DEST with a manifest of sha256 checksums."""
    role = resolve_role(project, role)
    require(project, role, "backup", query=f"backup {dest}")
    manifest = create_backup(
        project.root,
        backup_items(project),
        dest,
        audit_logs=[project.audit_log_path],
        meta={"tagsmith_version": __version__, "project": project.config.name},
        keys=project.encryption_keys(),
    )
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="backup",
        query=str(dest.resolve()),
        extra={"files": len(manifest.files), "bytes": manifest.total_bytes},
    )
    present = sorted(k for k, v in manifest.items.items() if v != "absent")
    console.print(
        f"backup written to {dest.resolve()}: {len(manifest.files)} files, "
        f"{manifest.total_bytes / 1e6:.1f} MB"
    )
    console.print(f"  items: {', '.join(present)}")


@store.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--yes", is_flag=True, help="Apply: replace the project's stores (default: preview).")
@role_option
@pass_project
def restore(project: Project, src: Path, yes: bool, role: str | None) -> None:
    """Verify the backup in SRC, then (with --yes) put every store back."""
    role = resolve_role(project, role)
    require(project, role, "restore", query=f"restore {src}")
    keys = project.encryption_keys()
    manifest = restore_backup(src, project.root, apply=False, keys=keys)
    archived = None
    if yes:
        previous_log = read_audit_log(project)
        erased = erasures_before_restore(project)
        restore_backup(src, project.root, keys=keys)
        # The backup's log is shorter than the checkpoint outside the project: this
        # deliberate, audited restore is the one thing that may move the checkpoint back.
        project.audit_log().reset_checkpoint()
        # Customers erased since the backup was taken stay erased.
        reerased = keep_erasures(project, erased, now=pd.Timestamp.now(tz="UTC"))
        # The restored data folder holds the backup's log; the one it replaced is kept.
        archived = archive_audit_log(project, previous_log) if previous_log else None
    console.print(
        f"backup {src.resolve()} from {manifest.created_at}: {len(manifest.files)} files, "
        "every checksum verified"
    )
    for rel, kind in sorted(manifest.items.items()):
        verb = "remove" if kind == "absent" else "replace"
        console.print(f"  {'' if yes else 'would '}{verb} {rel}")
    if not yes:
        console.print("preview only: re-run with --yes to restore")
        sys.exit(0)
    # The restored audit log is the backup's; this entry records the restore itself.
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="restore",
        query=str(src.resolve()),
        extra={
            "backup_created_at": manifest.created_at,
            "files": len(manifest.files),
            "archived_log": str(archived) if archived else None,
        },
    )
    console.print("restored")
    if reerased:
        console.print(f"  erased again {reerased} customer(s) erased after this backup was taken")
    if archived:
        console.print(f"  the audit log as it was before the restore is kept in {archived}")
