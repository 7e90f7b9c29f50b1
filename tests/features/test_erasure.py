"""Scrubbing erased customers from quarantine and Parquet files (features.erasure)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.crypto import EncryptionKeys, generate_key, is_sealed, open_bytes, write_parquet
from features.erasure import ErasureRegister, scrub_parquet, scrub_quarantine


def _quarantine(lines: list[str]) -> bytes:
    frame = pd.DataFrame(
        {
            "source_file": "f.csv",
            "line_number": range(2, 2 + len(lines)),
            "reason": "bad_amount",
            "message": "m",
            "original_line": lines,
        }
    )
    return frame.to_csv(index=False).encode()


def test_quarantine_rows_go_and_files_stay_as_found(tmp_path: Path) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test")
    sealed, plain = tmp_path / "import.csv", tmp_path / "live-20240101.csv"
    sealed.write_bytes(keys.seal(_quarantine(["c1,2024-01-01,x", "c10,2024-01-01,x"])))
    plain.write_bytes(_quarantine(['{"customer_id": "c1"}', '{"customer_id": "c100"}']))
    assert scrub_quarantine(tmp_path, ["c1"], keys) == 2
    assert is_sealed(sealed.read_bytes())
    assert not is_sealed(plain.read_bytes())  # appended to later: kept plain
    left = pd.read_csv(io.BytesIO(open_bytes(sealed, keys)), dtype=str)
    assert left["original_line"].tolist() == ["c10,2024-01-01,x"]
    assert pd.read_csv(plain, dtype=str)["original_line"].tolist() == ['{"customer_id": "c100"}']


def test_parquet_scrub_and_register(tmp_path: Path) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test")
    path = tmp_path / "x.parquet"
    write_parquet(pa.table({"customer_id": ["a", "b", "a"], "v": [1, 2, 3]}), path, keys)
    assert scrub_parquet(path, ["a"], keys) == 2
    assert is_sealed(path.read_bytes())
    register = ErasureRegister(tmp_path / "erasures.json")
    assert register.matcher() is None
    [h] = register.add(["cust-0042"], at=pd.Timestamp("2024-01-01", tz="UTC"))
    assert "cust-0042" not in (tmp_path / "erasures.json").read_text()
    matcher = register.matcher()
    assert matcher is not None
    assert matcher(pd.Series(["cust-0042", "b", None])).tolist() == [True, False, False]
    assert register.hashes() == {h}
