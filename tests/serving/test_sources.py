"""The runtime over the real tag store, access policy and audit log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.access import Caller
from serving.auditing import QueuedAudit
from serving.keys import ApiKeyStore
from serving.runtime import ServingRuntime
from serving.sources import JsonAudit, PolicyGovernance, TagStoreSnapshotSource
from tags.audit import AuditLog
from tags.policy import AccessPolicy
from tags.store import TagStore
from tests.serving.fakes import MODELS, FakeModelSource, make_snapshot


@dataclass(frozen=True)
class Tag:
    id: str
    category: str
    sensitivity: str
    source: str = "rule"


CATALOGUE = {
    t.id: t
    for t in [
        Tag("rfm_segment", "value", "internal"),
        Tag("old_customer", "behaviour", "public"),
        Tag("age_band", "basic", "restricted", "fact"),
        Tag("churn_risk", "risk", "internal", "model"),
        Tag("predicted_value", "value", "internal", "model"),
    ]
}


def _features(as_of: pd.Timestamp) -> pd.DataFrame:
    n = 60 if as_of > pd.Timestamp("2026-06-01", tz="UTC") else 50
    return make_snapshot(n).features


@pytest.fixture
def store(tmp_path: Path) -> TagStore:
    store = TagStore(tmp_path / "tags.duckdb")
    snap = make_snapshot(50)
    store.write_snapshot(snap.tags, as_of=snap.as_of, run_id="run-1")
    return store


def test_snapshot_source_reads_newest_run_and_its_features(store: TagStore) -> None:
    source = TagStoreSnapshotSource(store, _features)
    assert source.marker() == "run-1"
    loaded = source.load()
    assert loaded is not None
    assert loaded.run_id == "run-1"
    assert len(loaded.features) == 50
    assert set(loaded.tags["tag_id"]) == {"rfm_segment", "old_customer", "age_band"}
    later = make_snapshot(60, as_of=pd.Timestamp("2026-07-01", tz="UTC"))
    store.write_snapshot(later.tags, as_of=later.as_of, run_id="run-2")
    assert source.marker() == "run-2"
    assert len(source.load().features) == 60  # type: ignore[union-attr]


def test_empty_store_has_no_marker(tmp_path: Path) -> None:
    source = TagStoreSnapshotSource(TagStore(tmp_path / "none.duckdb"), _features)
    assert source.marker() is None
    assert source.load() is None


def test_policy_governance_uses_the_default_policy() -> None:
    gov = PolicyGovernance(CATALOGUE, AccessPolicy.default())
    assert "age_band" not in gov.visible("marketing")
    assert "age_band" in gov.visible("executive")
    assert gov.visible("service") == {"old_customer", "rfm_segment", "predicted_value"}
    assert gov.visible("intruder") == frozenset()
    assert gov.catalog()["churn_risk"]["category"] == "risk"


def test_runtime_on_real_store_policy_and_audit(store: TagStore, tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.json")
    log = AuditLog(tmp_path / "audit.log")
    audit = QueuedAudit(JsonAudit(log))
    runtime = ServingRuntime(
        models=MODELS,
        model_source=FakeModelSource({"churn-predictor": "1", "value-predictor": "1"}),
        snapshot_source=TagStoreSnapshotSource(store, _features),
        governance=PolicyGovernance(CATALOGUE, AccessPolicy.default()),
        audit=audit,
        verify_key=keys.verify,
        id_pepper=keys.pepper,
    )
    runtime.start()
    answer = runtime.tags(Caller("crm", "marketing"), ["c0001", "c0002", "ghost"])
    tags = {t["tag_id"] for t in answer["results"][0]["tags"]}
    assert tags == {"rfm_segment", "old_customer", "churn_risk", "predicted_value"}
    assert answer["run_id"] == "run-1"
    audit.flush()
    entries = log.entries()
    assert entries[-1]["action"] == "serve.tags"
    assert entries[-1]["actor"] == "crm"
    assert entries[-1]["n_customers"] == 2
    assert "c0001" not in (tmp_path / "audit.log").read_text()
    assert log.verify().ok
    audit.close()
    scores = [t["score"] for t in answer["results"][0]["tags"] if t["source"] == "model"]
    assert all(np.isfinite(scores))
