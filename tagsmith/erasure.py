"""Erasing one customer everywhere the project keeps them (the right to erasure).

:func:`erase_customers` records a keyed hash of each id in the erasure register
(``data/erasures.json``) first, so an import racing the erasure already quarantines
them, then removes the customers from the fact store and live events, the quarantine
files, every feature snapshot, the tag store (all history, transitions, live values)
and the activation outbox (queued and sent deliveries, sync member lists), and writes
one audit entry holding only the hash. Backups taken earlier (found in the audit log)
still hold the customer: they are listed, and a restore erases the register's
customers again (:func:`reapply_erasures`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.erasure import ErasureRegister, scrub_parquet, scrub_quarantine
from tags.audit import default_actor
from tags.store_governance import erase_customers as erase_tag_rows
from tagsmith.project import Project

__all__ = [
    "ErasureReport",
    "erase_customers",
    "erased_matcher",
    "erasure_register",
    "erasures_before_restore",
    "keep_erasures",
    "reapply_erasures",
]


@dataclass
class ErasureReport:
    """What one erasure removed.

    Attributes:
        hashes: Keyed hashes of the erased ids (what the audit log and register hold).
        removed: Store -> rows (or items) removed.
        older_backups: Backup folders taken before the erasure that still exist (they
            still hold the customers).
    """

    hashes: list[str]
    removed: dict[str, int] = field(default_factory=dict)
    older_backups: list[str] = field(default_factory=list)


def erasure_register(project: Project) -> ErasureRegister:
    """The project's register of erased ids (``data/erasures.json``)."""
    return ErasureRegister(project.data_dir / "erasures.json")


def erased_matcher(project: Project) -> Callable[[pd.Series], np.ndarray] | None:
    """What imports check ids against (None: nobody erased)."""
    return erasure_register(project).matcher()


def _scrub(project: Project, ids: Sequence[str], now: pd.Timestamp) -> dict[str, int]:
    removed: dict[str, int] = {}
    customers, events = project.fact_store().erase(ids, now=now)
    removed["fact customers"] = customers
    removed["fact events"] = events
    removed["live events"] = project.live_events().erase(ids)
    keys = project.encryption_keys()
    removed["quarantined rows"] = scrub_quarantine(project.quarantine_dir, ids, keys)
    removed["feature rows"] = project.feature_store().erase(ids)
    consent = project.facts_dir / "consent.parquet"
    removed["consent records"] = scrub_parquet(consent, ids, keys) if consent.is_file() else 0
    for table, n in erase_tag_rows(project.tag_store(), ids).items():
        removed[f"tag store {table}"] = n
    if project.outbox_path.exists():
        from activation.erasure import erase_from_outbox

        for what, n in erase_from_outbox(project.outbox(), ids).items():
            removed[f"outbox {what}"] = n
    return removed


def _backups_before(project: Project) -> list[str]:
    log = project.audit_log()
    if not log.path.exists():
        return []
    found = []
    for entry in log.entries():
        if entry.get("action") == "backup" and entry.get("query"):
            path = Path(str(entry["query"]))
            if path.is_dir() and str(path) not in found:
                found.append(str(path))
    return found


def erase_customers(
    project: Project, customer_ids: Sequence[str], *, role: str, now: pd.Timestamp
) -> ErasureReport:
    """Erase ``customer_ids`` from every store and record it (hashes only) in the audit log.

    Idempotent: erasing an id again removes whatever came back and records it again.
    """
    ids = [str(c) for c in customer_ids]
    register = erasure_register(project)
    hashes = register.add(ids, at=now)
    report = ErasureReport(hashes=hashes)
    report.removed = _scrub(project, ids, now)
    report.older_backups = _backups_before(project)
    project.audit_log().append(
        actor=default_actor(),
        role=role,
        action="erase",
        n_customers=len(ids),
        query="customers erase " + " ".join(hashes),
        extra={
            "customer_id_hashes": hashes,
            "removed": report.removed,
            "older_backups_still_holding": report.older_backups,
        },
    )
    return report


def reapply_erasures(project: Project, *, now: pd.Timestamp) -> dict[str, Any]:
    """Erase again every registered customer found in the stores (after a restore).

    The register holds hashes only, so the ids are found by hashing those the fact store
    and tag store hold. Returns the removal counts and how many customers were found.
    """
    register = erasure_register(project)
    matcher = register.matcher()
    if matcher is None:
        return {"customers": 0, "removed": {}}
    candidates: set[str] = set()
    facts = project.fact_store()
    if facts.exists():
        candidates.update(facts.load_customers()["customer_id"].astype(str))
    store = project.tag_store()
    if store.exists():
        with store.reader() as con:
            rows = con.execute("SELECT DISTINCT customer_id FROM snapshots").fetchall()
        candidates.update(str(r[0]) for r in rows)
    ordered = sorted(candidates)
    hit = matcher(pd.Series(ordered, dtype="string"))
    found = [c for c, h in zip(ordered, hit, strict=True) if h]
    if not found:
        return {"customers": 0, "removed": {}}
    return {"customers": len(found), "removed": _scrub(project, found, now)}


def erasures_before_restore(project: Project) -> bytes | None:
    """The register as it is, read before a restore replaces the data folder."""
    path = erasure_register(project).path
    return path.read_bytes() if path.is_file() else None


def keep_erasures(project: Project, register: bytes | None, *, now: pd.Timestamp) -> int:
    """After a restore: put the (append-only, so newer) register back and erase its
    customers again. Returns how many customers were erased again."""
    if register is None:
        return 0
    path = erasure_register(project).path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore.tmp")
    tmp.write_bytes(register)
    os.replace(tmp, path)
    return int(reapply_erasures(project, now=now)["customers"])
