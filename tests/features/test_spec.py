from __future__ import annotations

from pathlib import Path

import pytest

from features.catalog import age_band_labels, feature_catalog
from features.errors import SpecError
from features.spec import FAMILIES, FeatureSpec, default_spec, load_spec, spec_hash


def test_shipped_default_spec_equals_the_model_defaults() -> None:
    assert default_spec() == FeatureSpec()
    assert default_spec().windows == [7, 30, 90, 180, 365]
    assert set(default_spec().families) == set(FAMILIES)


def test_catalogue_names_are_unique_and_fully_described() -> None:
    catalogue = feature_catalog(default_spec())
    names = [f.name for f in catalogue]
    assert len(names) == len(set(names))
    assert all(f.description and f.unit and f.dtype and f.family in FAMILIES for f in catalogue)
    for fixed in (
        "recency_days",
        "never_purchased",
        "purchase_count_trend_30d",
        "loyalty_score",
        "category_entropy",
        "age_band",
        "region",
        "refund_amount_365d",
    ):
        assert fixed in names


def test_spec_hash_is_stable_and_tracks_definitions() -> None:
    assert spec_hash(default_spec()) == spec_hash(FeatureSpec())
    assert spec_hash(FeatureSpec(windows=[7, 30])) != spec_hash(FeatureSpec())
    # Window order is not a difference in definition.
    assert spec_hash(FeatureSpec(windows=[30, 7])) == spec_hash(FeatureSpec(windows=[7, 30]))


def test_loader_names_the_file_and_the_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text("windows: [7, 30]\nwindowz: [1]\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"features\.yaml.*\n.*'windowz': not a known setting"):
        load_spec(path)


def test_loader_reports_bad_values_with_what_was_got(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text("windows: [0]\nfamilies: [rfm, magic]\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "'windows'" in message
    assert "'families.1'" in message
    assert "magic" in message


def test_loader_refuses_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
    path = tmp_path / "features.yaml"
    path.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(path)


def test_age_band_labels() -> None:
    assert age_band_labels([18, 26, 36]) == ["<18", "18-25", "26-35", "36+"]


def test_engagement_spec_refuses_purchases_and_bad_decays(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(
        "engagement:\n  event_types: [browse, purchase]\n  decay_days: [0]\n", encoding="utf-8"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "'engagement.event_types'" in message
    assert "'engagement.decay_days'" in message
    names = [f.name for f in feature_catalog(FeatureSpec(families=["engagement"]))]
    assert names[:4] == [
        "browse_recency_days",
        "browse_per_day",
        "browse_silence",
        "browse_recent_ratio",
    ]
    assert "engagement_decayed_30d_ratio" in names
    assert "purchase_per_day" in names
