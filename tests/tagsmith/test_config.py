from __future__ import annotations

from pathlib import Path

import pytest

from tagsmith.config import ProjectConfig, dump_config, load_config
from tagsmith.errors import ConfigError


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text(dump_config(ProjectConfig()), encoding="utf-8")
    assert load_config(path) == ProjectConfig()


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("facts:\n  unknwon_customer: create\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "facts.unknwon_customer" in message


def test_bad_value_says_expected_then_got(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("facts:\n  unknown_customer: ignore\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "facts.unknown_customer" in message
    assert "'quarantine' or 'create'" in message
    assert "Got 'ignore' instead" in message


def test_declared_event_type_cannot_shadow_builtin(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("facts:\n  event_types: [purchase]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="built in"):
        load_config(path)


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
