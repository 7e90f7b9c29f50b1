"""Encryption at rest: stores and backups written under a key are unreadable without it
and readable with it; restore needs the key; keys rotate."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from features.crypto import MAGIC, EncryptionKeys, generate_key
from features.errors import StoreError
from tagsmith.cli import main

KEY = generate_key()


def run(root: Path, *args: str, key: str | None = KEY) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["--project", str(root), *args],
        env={"TAGSMITH_USER": "tester", "TAGSMITH_ENCRYPTION_KEY": key},
    )
    return result.exit_code, result.output


def test_seal_open_round_trip_wrong_key_and_rotation() -> None:
    old = EncryptionKeys.from_text(generate_key(), source="test")
    sealed = old.seal(b"customer c1 spent 10")
    assert sealed.startswith(MAGIC)
    assert b"c1" not in sealed
    assert old.open(sealed) == b"customer c1 spent 10"
    other = EncryptionKeys.from_text(generate_key(), source="test")
    with pytest.raises(StoreError, match="does not hold"):
        other.open(sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(StoreError, match="integrity"):
        old.open(tampered)
    rotating = EncryptionKeys(other.keys + old.keys, source="test")
    assert rotating.open(sealed) == b"customer c1 spent 10"
    assert rotating.open(rotating.seal(b"x")) == b"x"
    assert rotating.current_id == other.current_id
    with pytest.raises(StoreError, match="32-byte"):
        EncryptionKeys.from_text("c2hvcnQ", source="test")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project written entirely under KEY."""
    root = tmp_path_factory.mktemp("enc") / "p"
    raw = root.parent / "raw"
    steps = [
        ["init"],
        ["generate", "--customers", "300", "--seed", "4", "--out", str(raw)],
        [
            "facts",
            "import",
            "--customers",
            str(raw / "customers.csv"),
            "--events",
            str(raw / "events.csv"),
        ],
        ["features", "build"],
        ["tags", "run", "--role", "admin"],
    ]
    for step in steps:
        code, out = run(root, *step)
        assert code == 0, (step, out)
    return root


def test_stores_unreadable_without_the_key_readable_with_it(project: Path, tmp_path: Path) -> None:
    data = project / "data"
    parquet_files = [
        data / "facts" / "customers.parquet",
        data / "facts" / "events.parquet",
        *sorted((data / "features").glob("*.parquet")),
    ]
    assert len(parquet_files) >= 3
    some_id = pd.read_csv(project.parent / "raw" / "customers.csv", dtype=str)["customer_id"][0]
    for path in parquet_files:
        blob = path.read_bytes()
        assert blob.startswith(MAGIC), path
        assert some_id.encode() not in blob
        with pytest.raises(pa.ArrowInvalid):
            pq.read_table(path)
    with pytest.raises(duckdb.CatalogException, match="encrypted"):
        duckdb.connect(str(data / "tags.duckdb"), read_only=True)
    audit = (data / "audit.log").read_text(encoding="utf-8").splitlines()
    assert audit
    assert all(line.startswith("enc1:") for line in audit)

    # With the key every command reads them.
    code, out = run(project, "audit", "verify", "--role", "admin")
    assert code == 0, out
    export = tmp_path / "tags.csv"
    code, out = run(project, "tags", "export", "--out", str(export))
    assert code == 0, out
    assert len(pd.read_csv(export)) > 0
    code, out = run(project, "store", "encryption", "--format", "json")
    assert code == 0, out
    status = json.loads(out)
    assert status["stores"]["fact store"] == {"current key": 2, "older key": 0, "plain": 0}
    assert status["stores"]["tag store"]["encrypted"] == 1

    # Without it: refused with a message saying so, nothing read.
    code, out = run(project, "tags", "export", "--out", str(tmp_path / "x.csv"), key=None)
    assert code == 2
    assert "encrypted" in out
    code, out = run(project, "facts", "summary", key=None)
    assert code == 2
    assert "encrypted" in out
    # The wrong key: refused too.
    code, out = run(project, "tags", "export", "--out", str(tmp_path / "y.csv"), key=generate_key())
    assert code == 2
    assert "does not hold" in out
    assert not (tmp_path / "y.csv").exists()


def test_backups_need_the_key_and_restore_with_it(project: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b"
    code, out = run(project, "store", "backup", str(backup), "--role", "admin")
    assert code == 0, out
    manifest = json.loads((backup / "manifest.json").read_text())
    assert "tagsmith.yaml" in manifest["sealed"]
    for path in (backup / "files").rglob("*"):
        if path.is_file():
            assert path.read_bytes().startswith(MAGIC), path

    code, out = run(project, "store", "restore", str(backup), "--role", "admin", "--yes", key=None)
    assert code == 2
    assert "encrypted" in out
    code, out = run(
        project, "store", "restore", str(backup), "--role", "admin", "--yes", key=generate_key()
    )
    assert code == 2
    code, out = run(project, "store", "restore", str(backup), "--role", "admin", "--yes")
    assert code == 0, out
    assert (project / "tagsmith.yaml").read_text(encoding="utf-8").startswith("#")
    code, out = run(project, "tags", "export", "--out", str(tmp_path / "after.csv"))
    assert code == 0, out


def test_key_rotation_rewrites_every_store(project: Path, tmp_path: Path) -> None:
    new = generate_key()
    both = f"{new},{KEY}"
    code, out = run(project, "store", "encrypt", "--role", "admin", key=both)
    assert code == 0, out
    code, out = run(project, "store", "encryption", "--format", "json", key=new)
    assert code == 0, out
    status = json.loads(out)
    assert status["stores"]["fact store"]["older key"] == 0
    assert status["stores"]["fact store"]["plain"] == 0
    code, out = run(project, "tags", "export", "--out", str(tmp_path / "n.csv"), key=new)
    assert code == 0, out
    code, out = run(project, "audit", "verify", "--role", "admin", key=new)
    assert code == 0, out
    code, out = run(project, "tags", "export", "--out", str(tmp_path / "o.csv"), key=KEY)
    assert code == 2
    assert "does not hold" in out
