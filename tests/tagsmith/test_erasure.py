"""``tagsmith customers erase``: one customer gone from every store, tombstone hashed,
re-imports quarantined, restores erase again."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from activation.erasure import erase_from_outbox
from activation.outbox import Item, Outbox
from serving.access import Caller
from tagsmith.app import build_runtime
from tagsmith.cli import main
from tagsmith.project import Project


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--project", str(root), *args], env={"TAGSMITH_USER": "tester"}
    )
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project: facts imported, features built, two tagging runs."""
    root = tmp_path_factory.mktemp("erase") / "p"
    raw = root.parent / "raw"
    steps = [
        ["init"],
        ["generate", "--customers", "300", "--seed", "11", "--out", str(raw)],
        [
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ],
        ["features", "build"],
        ["tags", "run", "--role", "admin", "--as-of", "2024-10-01"],
        ["tags", "run", "--role", "admin"],
    ]
    for step in steps:
        code, out = run(root, *step)
        assert code == 0, (step, out)
    return root


def _victim(root: Path) -> str:
    customers = pd.read_csv(root.parent / "raw" / "customers.csv", dtype=str)
    events = pd.read_csv(root.parent / "raw" / "events.csv", dtype=str)
    busy = events["customer_id"].value_counts()
    return str(busy.index[0]) if busy.index[0] in set(customers["customer_id"]) else ""


def _holds(root: Path, cid: str) -> dict[str, bool]:
    """Where ``cid`` still appears (read straight from the files, not through Tagsmith)."""
    data = root / "data"
    found = {
        "customers": cid
        in set(pd.read_parquet(data / "facts" / "customers.parquet")["customer_id"]),
        "events": cid in set(pd.read_parquet(data / "facts" / "events.parquet")["customer_id"]),
        "features": any(
            cid in set(pd.read_parquet(p)["customer_id"])
            for p in (data / "features").glob("*.parquet")
        ),
    }
    con = duckdb.connect(str(data / "tags.duckdb"), read_only=True)
    try:
        for table in ("snapshots", "transitions", "live_tags"):
            n = con.execute(f"SELECT count(*) FROM {table} WHERE customer_id = ?", [cid]).fetchone()
            found[table] = bool(n and n[0])
    finally:
        con.close()
    return found


def test_erase_removes_the_customer_everywhere(project: Path, tmp_path: Path) -> None:
    cid = _victim(project)
    assert cid
    before = _holds(project, cid)
    assert before["customers"]
    assert before["events"]
    assert before["features"]
    assert before["snapshots"]
    assert before["transitions"]

    # A backup taken before the erasure still holds the customer: it is listed.
    old_backup = tmp_path / "before"
    code, out = run(project, "store", "backup", str(old_backup), "--role", "admin")
    assert code == 0, out

    served = Project.load(project)
    rt = build_runtime(served)
    rt.start()
    try:
        exec_caller = Caller("boss", "executive")
        assert rt.tags(exec_caller, [cid])["unknown_ids"] == []

        code, out = run(project, "customers", "erase", cid, "--role", "marketing", "--yes")
        assert code == 2
        assert "erase" in out
        code, out = run(project, "customers", "erase", cid, "--role", "admin")
        assert code == 0
        assert "re-run with --yes" in out
        assert _holds(project, cid)["customers"]

        code, out = run(
            project, "customers", "erase", cid, "--role", "admin", "--yes", "--format", "json"
        )
        assert code == 0, out
        report = json.loads(out)
        assert report["removed"]["fact customers"] == 1
        assert report["removed"]["fact events"] > 0
        assert report["removed"]["tag store snapshots"] > 0
        assert report["older_backups"] == [str(old_backup.resolve())]
        assert not any(_holds(project, cid).values()), _holds(project, cid)

        # The running service reloads: the customer is unknown to /tags.
        rt.reload()
        assert rt.tags(exec_caller, [cid])["unknown_ids"] == [cid]
    finally:
        rt.stop()

    # Exports made afterwards do not hold them.
    export = tmp_path / "export.csv"
    code, out = run(project, "tags", "export", "--out", str(export))
    assert code == 0, out
    assert cid not in set(pd.read_csv(export, dtype=str)["customer_id"])

    # No raw id in the audit log; the erasure entry holds the keyed hash.
    audit = (project / "data" / "audit.log").read_text(encoding="utf-8")
    assert cid not in audit
    entries = [json.loads(line) for line in audit.splitlines()]
    erase = [e for e in entries if e["action"] == "erase"]
    assert len(erase) == 1
    assert erase[0]["extra"]["customer_id_hashes"] == report["hashes"]
    code, out = run(project, "audit", "verify", "--role", "admin")
    assert code == 0, out

    # A backup taken afterwards does not hold them.
    new_backup = tmp_path / "after"
    code, out = run(project, "store", "backup", str(new_backup), "--role", "admin")
    assert code == 0, out
    files = new_backup / "files" / "data"
    assert cid not in set(pd.read_parquet(files / "facts" / "customers.parquet")["customer_id"])
    assert cid not in set(pd.read_parquet(files / "facts" / "events.parquet")["customer_id"])

    # Re-importing the id: quarantined as erased, with the line withheld.
    raw = project.parent / "raw"
    again = tmp_path / "again.csv"
    rows = pd.read_csv(raw / "customers.csv", dtype=str)
    rows[rows["customer_id"] == cid].to_csv(again, index=False)
    code, out = run(project, "facts", "import", "--customers", str(again))
    assert code == 0, out
    assert "erased" in out
    assert not _holds(project, cid)["customers"]
    events_again = tmp_path / "events_again.csv"
    ev = pd.read_csv(raw / "events.csv", dtype=str)
    ev[ev["customer_id"] == cid].to_csv(events_again, index=False)
    code, out = run(project, "facts", "import", "--events", str(events_again))
    assert code == 0, out
    assert not _holds(project, cid)["events"]
    quarantined = pd.concat(
        pd.read_csv(p, dtype=str) for p in (project / "data" / "quarantine").glob("*.csv")
    )
    assert set(quarantined["reason"]) >= {"erased"}
    assert not quarantined["original_line"].str.contains(cid, regex=False).any()

    # Restoring the older backup brings the files back, and the erasure is applied again.
    code, out = run(project, "store", "restore", str(old_backup), "--role", "admin", "--yes")
    assert code == 0, out
    assert "erased again 1 customer(s)" in out
    assert not any(_holds(project, cid).values())


def test_outbox_erasure_reforms_batches_and_members(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "activation.sqlite")

    def item(i: int, cid: str) -> Item:
        payload = json.dumps({"customer_id": cid, "n": i}, separators=(",", ":")).encode()
        return Item(f"k{i}", "trigger", "t", 1, "hook", cid, payload)

    box.enqueue([item(1, "alice"), item(2, "bob"), item(3, "alice"), item(4, "carol")])
    claimed = box.claim("hook", batch_size=2)
    assert claimed is not None
    assert b"alice" in claimed.body
    box.enqueue([item(5, "alice")])
    with box._tx() as con:
        con.execute("INSERT INTO sync_members VALUES ('s', 'alice'), ('s', 'bob')")

    counts = erase_from_outbox(box, ["alice"])
    assert counts == {"items": 3, "batches": 1, "sync_members": 1}
    batch = box.batch(claimed.id)
    assert batch["n_items"] == 1
    with box._tx() as con:
        bodies = [bytes(r[0]) for r in con.execute("SELECT body FROM batches")]
        payloads = [bytes(r[0]) for r in con.execute("SELECT payload FROM items")]
        members = [r[0] for r in con.execute("SELECT customer_id FROM sync_members")]
    assert all(b"alice" not in b for b in bodies + payloads)
    assert members == ["bob"]
    box.close()
    assert b"alice" not in (tmp_path / "activation.sqlite").read_bytes()
