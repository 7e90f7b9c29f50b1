"""Catalogue schema, naming rules, load errors, and catalogue versions (plan/apply)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tags.catalogue import LIBRARY_DIR, Catalogue, copy_library
from tags.config import TagsConfig
from tags.definitions import TagDefinition, normalise_name
from tags.errors import CatalogueError, UnknownTagError
from tags.versions import CatalogueHistory

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tag(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "big_spender",
        "display_name": "价值_大额客户",
        "category": "value",
        "description": "Net spend of 1000 or more.",
        "owner": "crm",
        "source": "rule",
        "value_type": "boolean",
        "status": "active",
        "rule": "monetary_total >= 1000",
    }
    base.update(overrides)
    return base


def write(directory: Path, name: str, tags: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump({"tags": tags}, allow_unicode=True), encoding="utf-8")
    return path


def test_normalise_name_folds_width_case_and_spaces() -> None:
    assert normalise_name("Ｖａｌｕｅ_ Big  Spender") == normalise_name("value_bigspender")
    assert normalise_name("价值_大额　客户") == normalise_name("价值_大额客户")


def test_loads_a_valid_catalogue(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        [
            tag(),
            tag(
                id="tiny",
                display_name="value_tiny spender",
                rule="monetary_total < 10",
                status="draft",
            ),
        ],
    )
    catalogue = Catalogue.load(tmp_path)
    assert [t.id for t in catalogue] == ["big_spender", "tiny"]
    assert [t.id for t in catalogue.active()] == ["big_spender"]
    assert catalogue.files["tiny"] == tmp_path / "a.yaml"
    assert catalogue.get("big_spender").version_label == "big_spender@1"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"display_name": "大额客户"}, "must start with a prefix of category 'value'"),
        ({"category": "valeu"}, "Did you mean 'value'?"),
        ({"id": "Big-Spender"}, "lower snake_case ASCII"),
        ({"status": "retired"}, "key 'status'"),
        ({"source": "magic"}, "key 'source'"),
        ({"sensitivity": "secret"}, "key 'sensitivity'"),
        ({"colour": "red"}, "key 'colour': not a known field"),
        ({"owner": " "}, "key 'owner': must not be blank"),
        ({"rule": None}, "rule tags need a 'rule'"),
        ({"value_type": "ordinal"}, "ordinal tags need 'values'"),
        ({"value_type": "score", "bands": [{"value": "hi", "min": 1}]}, "produced by models"),
        ({"rule": "monetary_total >= "}, "ends too early"),
        ({"rule": "count(purchse) > 1"}, "Did you mean 'purchase'?"),
        (
            {
                "rule": {"cases": [{"value": "x", "when": "a > 1"}], "else": "y"},
                "value_type": "ordinal",
                "values": ["x"],
            },
            "not among the declared values",
        ),
    ],
)
def test_load_errors_name_the_file_and_the_tag(
    tmp_path: Path, overrides: dict[str, Any], fragment: str
) -> None:
    path = write(tmp_path, "bad.yaml", [tag(**overrides)])
    with pytest.raises(CatalogueError) as info:
        Catalogue.load(tmp_path, event_types=["purchase", "browse"])
    message = str(info.value)
    assert str(path) in message
    assert "big_spender" in message or "Big-Spender" in message
    assert fragment in message


def test_duplicate_ids_and_near_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", [tag()])
    write(tmp_path, "b.yaml", [tag()])
    with pytest.raises(CatalogueError, match=r"must be unique.*first defined in .*a\.yaml"):
        Catalogue.load(tmp_path)
    other = tmp_path / "other"
    write(other, "a.yaml", [tag(), tag(id="big2", display_name="价值_ 大额客户 ")])
    with pytest.raises(CatalogueError, match="duplicates tag 'big_spender'"):
        Catalogue.load(other)
    wide = tmp_path / "wide"
    write(
        wide, "a.yaml", [tag(display_name="value_BIG"), tag(id="b2", display_name="ｖａｌｕｅ_big")]
    )
    with pytest.raises(CatalogueError, match="normalised"):
        Catalogue.load(wide)


def test_extra_categories_and_prefixes_come_from_config(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", [tag(category="psychology", display_name="心理_价格敏感")])
    with pytest.raises(CatalogueError, match="extra_categories"):
        Catalogue.load(tmp_path)
    config = TagsConfig(extra_categories={"psychology": ["心理_", "psychology_"]})
    assert [t.id for t in Catalogue.load(tmp_path, config)] == ["big_spender"]
    with pytest.raises(ValueError, match="built-in"):
        TagsConfig(prefixes={"psychology": ["x_"]})


def test_file_shape_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="must hold one key, 'tags'"):
        Catalogue.load(tmp_path)
    (tmp_path / "a.yaml").write_text("tags: [\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML"):
        Catalogue.load(tmp_path)
    with pytest.raises(CatalogueError, match="no such folder"):
        Catalogue.load(tmp_path / "missing")


def test_unknown_tag_suggests(library: Catalogue) -> None:
    with pytest.raises(UnknownTagError, match="Did you mean 'rfm_segment'"):
        library.get("rfm_segmnt")


def test_copy_library_keeps_existing_files(tmp_path: Path) -> None:
    written = copy_library(tmp_path)
    assert {p.name for p in written} == {p.name for p in LIBRARY_DIR.glob("*.yaml")}
    (tmp_path / "value.yaml").write_text("tags: []\n", encoding="utf-8")
    assert copy_library(tmp_path) == []
    assert (tmp_path / "value.yaml").read_text(encoding="utf-8") == "tags: []\n"


def _catalogue(*tags: dict[str, Any]) -> Catalogue:
    return Catalogue.from_definitions([TagDefinition.model_validate(t) for t in tags])


def test_plan_and_apply_record_versions(tmp_path: Path) -> None:
    history = CatalogueHistory(tmp_path / "versions")
    first = _catalogue(tag(status="draft"))
    plan = history.plan(first)
    assert plan.base_version is None
    assert [c.describe() for c in plan.changes] == ["+ big_spender (new, draft, v1)"]
    assert history.apply(first, applied_at=NOW) == 1
    assert history.plan(first).empty
    assert history.apply(first, applied_at=NOW) == 1  # nothing new: no new version
    promoted = _catalogue(tag(status="active"))
    assert [c.describe() for c in history.plan(promoted).changes] == [
        "~ big_spender (draft -> active): status"
    ]
    assert history.apply(promoted, applied_at=NOW) == 2
    record = history.load(2)
    assert record is not None
    assert record["tags"]["big_spender"]["status"] == "active"
    assert history.versions() == [1, 2]


@pytest.mark.parametrize(
    ("before", "after", "fragment"),
    [
        (tag(status="active"), tag(status="draft"), "active -> draft"),
        (tag(status="deprecated"), tag(status="active"), "deprecated -> active"),
        (tag(), tag(rule="monetary_total >= 2000"), "expected version 2"),
        (tag(version=3), tag(version=2), "must not go down"),
        (tag(), None, "deprecate it"),
    ],
)
def test_apply_refuses_forbidden_changes(
    tmp_path: Path, before: dict[str, Any], after: dict[str, Any] | None, fragment: str
) -> None:
    history = CatalogueHistory(tmp_path)
    if before["status"] == "deprecated":  # new tags cannot start deprecated
        history.apply(_catalogue(tag()), applied_at=NOW)
    history.apply(_catalogue(before), applied_at=NOW)
    applied = history.versions()
    new = _catalogue(after) if after else Catalogue.from_definitions([])
    assert fragment in "\n".join(history.plan(new).problems)
    with pytest.raises(CatalogueError, match="cannot be applied"):
        history.apply(new, applied_at=NOW)
    assert history.versions() == applied


def test_changed_rule_with_version_bump_and_deprecated_removal_apply(tmp_path: Path) -> None:
    history = CatalogueHistory(tmp_path)
    history.apply(_catalogue(tag()), applied_at=NOW)
    bumped = _catalogue(tag(rule="monetary_total >= 2000", version=2))
    assert [c.describe() for c in history.plan(bumped).changes] == [
        "~ big_spender (v1 -> v2): rule, version"
    ]
    assert history.apply(bumped, applied_at=NOW) == 2
    assert (
        history.apply(
            _catalogue(tag(version=2, rule="monetary_total >= 2000", status="deprecated")),
            applied_at=NOW,
        )
        == 3
    )
    assert history.apply(Catalogue.from_definitions([]), applied_at=NOW) == 4
