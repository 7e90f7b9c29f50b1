"""Audience syncs: keep a list destination's copy of a saved audience in step.

Each sync run selects the audience (through the governed reader, as the sync's role:
checked and audited like any export) on the newest snapshot, compares it with the
members the destination already holds, and sends the difference: the **full list**
the first time, then only who was **added** and **removed**. Webhook destinations get
the changes as outbox items (batched, signed, retried like trigger events, in the same
transaction that records the new membership); file destinations get one file per run
(``<sync>-<run>-full.csv`` then ``<sync>-<run>-changes.csv``, or ``.parquet``), written
atomically before the membership is recorded, so a crash in between rewrites the same
file on the next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from activation.definitions import AudienceSync, FileDestination, WebhookDestination
from activation.outbox import Item, Outbox
from activation.payloads import canonical, item_key, plain
from tags.access import TagReader
from tags.policy import tag_infos
from tags.segments import select_audience

__all__ = ["SyncResult", "run_sync"]


@dataclass(frozen=True)
class SyncResult:
    """What one sync run did.

    Attributes:
        sync: The sync.
        run: Its run number (0: nothing was due).
        kind: ``full``, ``changes`` or ``skipped``.
        added: Members added (all members on a full run).
        removed: Members removed.
        members: Audience size now.
        target: The file written (file destinations), else None.
        reason: Why it was skipped.
    """

    sync: str
    run: int
    kind: str
    added: int = 0
    removed: int = 0
    members: int = 0
    target: str | None = None
    reason: str = ""


def _values(
    reader: TagReader, as_of: pd.Timestamp, include: list[str], ids: list[str]
) -> pd.DataFrame:
    """customer_id plus the included tags' values of ``ids`` in the snapshot of ``as_of``."""
    wanted = pd.DataFrame({"customer_id": pd.Series(ids, dtype=object)})
    if not include or not ids:
        for tag in include:
            wanted[tag] = pd.Series(dtype=object)
        return wanted
    boolean = [
        t.id
        for t in tag_infos(reader.catalogue)
        if t.id in include and getattr(t, "value_type", "") == "boolean"
    ]
    wide = reader.store.wide(as_of, tags=include, boolean_tags=boolean)
    wide["customer_id"] = wide["customer_id"].astype(object)
    out = wanted.merge(wide, on="customer_id", how="left")
    for tag in boolean:
        out[tag] = out[tag].fillna(False).astype(bool)
    return out


def run_sync(
    sync: AudienceSync,
    *,
    version: int,
    expression: str,
    destination: WebhookDestination | FileDestination,
    reader: TagReader,
    outbox: Outbox,
    project_root: Path,
    now: float,
    force: bool = False,
    consent: Callable[[str, Sequence[str]], np.ndarray] | None = None,
) -> SyncResult:
    """Run ``sync`` once if a new snapshot exists (and ``min_interval_s`` has passed).

    Args:
        sync: The sync definition.
        version: The applied definitions version.
        expression: The audience expression pinned at apply.
        destination: Its destination.
        reader: A governed reader acting as the sync's role.
        outbox: The outbox (membership state, queued items).
        project_root: Base of relative file destination paths.
        now: Current Unix time (for ``min_interval_s``).
        force: Run even when the snapshot was synced already.
        consent: Who may be used for a purpose; customers of the audience who did not
            consent to the sync's purpose are not members (None: not checked).
    """
    store = reader.store
    if not store.exists() or store.latest_as_of() is None:
        return SyncResult(sync.name, 0, "skipped", reason="no tag snapshot yet")
    info = store.run_info()
    last_run, last_at, last_snapshot, members = outbox.sync_state(sync.name)
    if not force and last_snapshot == info.run_id:
        return SyncResult(sync.name, 0, "skipped", members=len(members), reason="up to date")
    if not force and last_at is not None and now - last_at < sync.min_interval_s:
        return SyncResult(sync.name, 0, "skipped", members=len(members), reason="min_interval_s")
    chosen = select_audience(reader, expression, as_of=info.as_of, action="export")
    current = set(chosen.customers["customer_id"].astype(str))
    if consent is not None and current:
        ordered = sorted(current)
        current = {c for c, ok in zip(ordered, consent(sync.purpose, ordered), strict=True) if ok}
    run = last_run + 1
    kind = "full" if last_run == 0 else "changes"
    added = sorted(current if kind == "full" else current - members)
    removed = [] if kind == "full" else sorted(members - current)
    as_of_text = info.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    include = list(sync.include)
    if include and added:
        reader.authorise("export", include, f"sync {sync.name} include")
    values = _values(reader, info.as_of, include, added)
    target: str | None = None
    items: list[Item] = []
    if isinstance(destination, FileDestination):
        if added or removed or kind == "full":
            target = str(
                _write_file(
                    destination, project_root, sync.name, run, kind, as_of_text, values, removed
                )
            )
    else:
        items = _sync_items(sync, version, destination.name, run, kind, as_of_text, values, removed)
    outbox.commit_sync(
        sync.name,
        run=run,
        as_of=as_of_text,
        kind=kind,
        added=added,
        removed=removed,
        members=len(current),
        snapshot=info.run_id,
        target=target,
        items=items,
    )
    return SyncResult(sync.name, run, kind, len(added), len(removed), len(current), target=target)


def _sync_items(
    sync: AudienceSync,
    version: int,
    destination: str,
    run: int,
    kind: str,
    as_of: str,
    values: pd.DataFrame,
    removed: list[str],
) -> list[Item]:
    include = list(sync.include)
    size = len(values) + len(removed)
    out = []
    for op, records in (
        ("add", values.to_dict("records")),
        ("remove", [{"customer_id": c} for c in removed]),
    ):
        for record in records:
            customer = str(record["customer_id"])
            key = item_key("sync", sync.name, run, op, customer)
            payload: dict[str, Any] = {
                "id": key,
                "type": "audience_sync",
                "sync": sync.name,
                "sync_version": version,
                "purpose": sync.purpose,
                "run": {"number": run, "kind": kind, "size": size},
                "op": op,
                "customer_id": customer,
                "as_of": as_of,
            }
            if op == "add":
                payload["tags"] = {t: plain(record.get(t)) for t in include}
            out.append(
                Item(key, "sync", sync.name, version, destination, customer, canonical(payload))
            )
    return out


def _write_file(
    destination: FileDestination,
    root: Path,
    name: str,
    run: int,
    kind: str,
    as_of: str,
    values: pd.DataFrame,
    removed: list[str],
) -> Path:
    folder = Path(destination.path)
    folder = (folder if folder.is_absolute() else root / folder) / name
    folder.mkdir(parents=True, exist_ok=True)
    frame = values.copy()
    frame.insert(0, "op", "add")
    if removed:
        gone = pd.DataFrame({"op": "remove", "customer_id": removed})
        frame = pd.concat([frame, gone], ignore_index=True)
    frame.insert(2, "as_of", as_of)
    path = folder / f"{name}-{run:06d}-{kind}.{destination.format}"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if destination.format == "csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.astype({c: "string" for c in frame.columns if c not in ("customer_id",)}).to_parquet(
            tmp, index=False
        )
    os.replace(tmp, path)
    return path
