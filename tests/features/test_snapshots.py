from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.errors import StoreError
from features.snapshots import FeatureStore

NOW = pd.Timestamp("2024-01-02T03:04:05Z")


def _frame(value: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": pd.array(["a", "b"], dtype="string"), "recency_days": [value, None]}
    )


def _write(store: FeatureStore, value: float, as_of: str = "2024-01-01") -> Path:
    return store.write(
        _frame(value), as_of=as_of, spec_hash="s1", facts_fingerprint="f1", created_at=NOW
    )


def test_write_then_read_roundtrip_with_metadata(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "features")
    path = _write(store, 1.5)
    assert path.name == "features_20240101T000000Z.parquet"
    pd.testing.assert_frame_equal(store.read("2024-01-01"), _frame(1.5))
    assert store.read().equals(store.read("2024-01-01"))
    assert store.read("2024-01-01", customer_id="b")["customer_id"].tolist() == ["b"]
    meta = store.meta("2024-01-01")
    assert meta["spec_hash"] == "s1"
    assert meta["facts_fingerprint"] == "f1"
    assert meta["rows"] == 2
    assert meta["features"] == 1


def test_snapshots_are_listed_and_latest_is_found(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    assert store.latest_as_of() is None
    _write(store, 1.0, "2024-02-01")
    _write(store, 2.0, "2024-01-01")
    snaps = store.snapshots()
    assert [str(d.date()) for d in snaps["as_of"]] == ["2024-01-01", "2024-02-01"]
    assert store.latest_as_of() == pd.Timestamp("2024-02-01", tz="UTC")
    assert store.read()["recency_days"].iloc[0] == 1.0


def test_a_failed_write_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureStore(tmp_path)
    _write(store, 1.0)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        _write(store, 2.0)
    assert store.read("2024-01-01")["recency_days"].iloc[0] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["features_20240101T000000Z.parquet"]


def test_missing_snapshot_and_wrong_date_rows_are_refused(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    with pytest.raises(StoreError, match="features build"):
        store.read("2024-01-01")
    with pytest.raises(StoreError, match="features build"):
        store.read()
    frame = _frame(1.0).assign(as_of=pd.Timestamp("2024-03-01", tz="UTC"))
    with pytest.raises(StoreError, match="2024-03-01"):
        store.write(frame, as_of="2024-01-01", spec_hash="s", facts_fingerprint="f", created_at=NOW)


def test_a_built_frame_keeps_the_catalogue_dtypes_through_a_snapshot(tmp_path: Path) -> None:
    from features.build import build_features
    from features.schema import customers_frame, events_frame

    customers = customers_frame(
        [
            {"customer_id": "a", "signup_at": "2021-01-01", "region": "north", "birth_year": 1990},
            {"customer_id": "b", "signup_at": "2021-01-05"},
        ]
    )
    events = events_frame(
        [
            {
                "customer_id": "a",
                "occurred_at": "2021-02-01",
                "event_type": "purchase",
                "amount": 10.05,
                "category": "books",
            }
        ]
    )
    frame = build_features(customers, events, as_of="2021-03-01")
    store = FeatureStore(tmp_path)
    store.write(frame, as_of="2021-03-01", spec_hash="s", facts_fingerprint="f", created_at=NOW)
    back = store.read("2021-03-01")
    pd.testing.assert_frame_equal(back, frame)
    assert back["monetary_total"].iloc[0] == 10.05  # money stays float64: cents exact
