from __future__ import annotations

from pathlib import Path

import pytest

from tags.access import TagReader
from tags.audit import AuditLog
from tags.errors import AccessDenied, AudienceError, TagsError
from tags.policy import AccessPolicy
from tags.segments import AudienceBook, compile_audience, select_audience
from tags.store import TagStore
from tests.tags.conftest import Tag, long_table


def _reader(store: TagStore, catalogue: dict[str, Tag], tmp_path: Path, role: str) -> TagReader:
    return TagReader(
        store,
        catalogue,
        AccessPolicy.default(),
        AuditLog(tmp_path / "audit.log"),
        role=role,
        actor="ana",
    )


def _ids(audience) -> list[str]:
    return sorted(audience.customers["customer_id"])


def test_selects_by_tag_combinations(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    reader = _reader(store, catalogue, tmp_path, "marketing")
    # Feb: c1 active+old, c2 active+old+important, c3 dormant+important, c5 new.
    a = select_audience(
        reader, "rfm_segment = 'important_value' and lifecycle in ('active', 'dormant')"
    )
    assert _ids(a) == ["c2", "c3"]
    assert a.tags == ["lifecycle", "rfm_segment"]
    # A tag the customer lacks is null, and null comparisons are false (SQL logic).
    assert (
        _ids(select_audience(reader, "old_customer and not rfm_segment = 'important_value'")) == []
    )
    assert _ids(
        select_audience(reader, "old_customer and (rfm_segment is null or rfm_segment != 'x')")
    ) == ["c1", "c2"]
    assert _ids(select_audience(reader, "not old_customer")) == ["c3", "c5"]
    assert _ids(select_audience(reader, "rfm_segment is null")) == ["c1", "c5"]
    jan = select_audience(reader, "lifecycle = 'new'", as_of="2024-02-10")
    assert _ids(jan) == ["c1"]
    (entry, *_rest) = AuditLog(tmp_path / "audit.log").entries()
    assert entry["action"] == "audience"
    assert entry["n_customers"] == 2
    assert entry["tags"] == ["lifecycle", "rfm_segment"]


def test_scores_are_columns_of_their_own(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    rows = [
        ("c1", "churn_risk", "high"),
        ("c2", "churn_risk", "medium"),
        ("c3", "churn_risk", "low"),
    ]
    store.write_snapshot(long_table(rows, "2024-03-31", scores=[0.9, 0.5, 0.1]), as_of="2024-03-31")
    reader = _reader(store, catalogue, tmp_path, "marketing")
    assert _ids(select_audience(reader, "churn_risk_score >= 0.5")) == ["c1", "c2"]
    assert _ids(select_audience(reader, "churn_risk in ('high', 'medium')")) == ["c1", "c2"]


def test_restricted_tag_in_an_expression_is_refused(
    store: TagStore, catalogue: dict[str, Tag], tmp_path: Path
) -> None:
    reader = _reader(store, catalogue, tmp_path, "marketing")
    with pytest.raises(AccessDenied, match="age_band"):
        select_audience(reader, "lifecycle = 'active' and age_band = '26-35'")
    service = _reader(store, catalogue, tmp_path, "service")
    with pytest.raises(AccessDenied, match="may not export"):
        select_audience(service, "lifecycle = 'active'", action="export")
    assert [e["action"] for e in AuditLog(tmp_path / "audit.log").entries()] == ["denied", "denied"]


def test_bad_expressions_are_explained(catalogue: dict[str, Tag]) -> None:
    with pytest.raises(TagsError, match="lifecycel"):
        compile_audience("lifecycel = 'active'", catalogue)
    with pytest.raises(TagsError):
        compile_audience("lifecycle = ", catalogue)
    with pytest.raises(TagsError):
        compile_audience("lifecycle", catalogue)  # not a condition
    with pytest.raises(TagsError):
        compile_audience("count(purchase, last 30 days) > 1", catalogue)  # no events here
    with pytest.raises(AudienceError):
        compile_audience("  ", catalogue)


def test_saved_audiences_round_trip(catalogue: dict[str, Tag], tmp_path: Path) -> None:
    book = AudienceBook(tmp_path / "audiences.yaml")
    book.save("winback", "lifecycle = 'dormant' and old_customer", catalogue, actor="ana")
    assert book.get("winback").expression == "lifecycle = 'dormant' and old_customer"
    with pytest.raises(AudienceError, match="already saved"):
        book.save("winback", "lifecycle = 'new'", catalogue)
    book.save("winback", "lifecycle = 'new'", catalogue, replace=True)
    assert book.get("winback").expression == "lifecycle = 'new'"
    with pytest.raises(TagsError):
        book.save("broken", "lifecycle = ", catalogue)
    with pytest.raises(AudienceError, match="letters"):
        book.save("bad name", "lifecycle = 'new'", catalogue)
    assert list(book.list()) == ["winback"]
    book.delete("winback")
    with pytest.raises(AudienceError, match="none saved"):
        book.get("winback")
