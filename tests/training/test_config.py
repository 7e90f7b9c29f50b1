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
    assert config.n_cutoffs == 6


def test_training_section_is_validated_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "tagsmith.yaml"
    path.write_text("training:\n  horizon_days: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "training.horizon_days" in str(info.value)
    assert str(path) in str(info.value)
