from __future__ import annotations

from pathlib import Path

import pytest

from tagsmith.config import load_config
from tagsmith.errors import ConfigError
from training.config import TrainingConfig


def test_training_defaults() -> None:
    config = TrainingConfig()
    assert config.horizon_days == 90
    assert config.calibration == "isotonic"
    assert config.validation_cutoffs < config.n_cutoffs


def test_training_section_is_validated_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("training:\n  horizon_days: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "training.horizon_days" in str(info.value)
    assert str(path) in str(info.value)


def test_validation_cutoffs_must_leave_training_cutoffs(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("training:\n  n_cutoffs: 3\n  validation_cutoffs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="validation_cutoffs must be smaller"):
        load_config(path)
