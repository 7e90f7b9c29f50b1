from __future__ import annotations

from pathlib import Path

import pytest

from tags.access import TagReader
from tags.audit import AuditLog
from tags.errors import AccessDenied
from tags.policy import AccessPolicy
from tags.store import TagStore
from tests.tags.conftest import Tag


def _reader(store: TagStore, catalogue: dict[str, Tag], tmp_path: Path, role: str) -> TagReader:
    return TagReader(
        store,
        catalogue,
        AccessPolicy.default(),
        AuditLog(tmp_path / "audit.log"),
        role=role,
        actor="ana",
    )


def test_reads_are_filtered_by_role_and_audited(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    marketing = _reader(store, catalogue, tmp_path, "marketing")
    snap = marketing.snapshot()
    assert "age_band" not in set(snap["tag_id"])
    assert {"lifecycle", "rfm_segment", "old_customer"} <= set(snap["tag_id"])
    service = _reader(store, catalogue, tmp_path, "service")
    assert set(service.history("c1")["tag_id"]) == {"lifecycle", "old_customer"}
    executive = _reader(store, catalogue, tmp_path, "executive")
    assert "age_band" in set(executive.history("c1")["tag_id"])
    entries = AuditLog(tmp_path / "audit.log").entries()
    assert [(e["role"], e["action"], e["query"]) for e in entries] == [
        ("marketing", "read", "snapshot as_of=latest"),
        ("service", "read", "history c1"),
        ("executive", "read", "history c1"),
    ]
    assert entries[0]["n_customers"] == 4
    assert "age_band" not in entries[0]["tags"]


def test_export_of_restricted_tag_is_refused_and_the_refusal_audited(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    marketing = _reader(store, catalogue, tmp_path, "marketing")
    with pytest.raises(AccessDenied, match="may not read age_band"):
        marketing.export(tmp_path / "x.csv", tags=["lifecycle", "age_band"])
    assert not (tmp_path / "x.csv").exists()
    rows, customers = marketing.export(tmp_path / "all.csv")
    text = (tmp_path / "all.csv").read_text()
    assert "age_band" not in text
    assert "26-35" not in text
    assert rows == 8
    assert customers == 4
    service = _reader(store, catalogue, tmp_path, "service")
    with pytest.raises(AccessDenied, match="may not export"):
        service.export(tmp_path / "svc.csv")
    (denied, export, denied2) = AuditLog(tmp_path / "audit.log").entries()
    assert denied["action"] == "denied"
    assert denied["tags"] == ["age_band", "lifecycle"]
    assert export["action"] == "export"
    assert export["n_customers"] == 4
    assert denied2["extra"]["requested_action"] == "export"


def test_diff_and_coverage_hide_tags_the_role_may_not_see(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    service = _reader(store, catalogue, tmp_path, "service")
    assert "rfm_segment" in set(service.diff("2024-01-31", "2024-02-29")["tag_id"])
    with pytest.raises(AccessDenied):
        service.transitions("age_band")
    cov = service.coverage()
    assert set(cov["tag_id"]) == {"lifecycle", "old_customer", "rfm_segment"}


def test_unknown_role_is_refused_up_front(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    with pytest.raises(AccessDenied, match="Got 'nobody'"):
        _reader(store, catalogue, tmp_path, "nobody")
