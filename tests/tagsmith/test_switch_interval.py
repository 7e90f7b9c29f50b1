"""``live_tagger`` sets the process's thread switch interval from ``streaming.gil_switch_ms``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from streaming.config import StreamingConfig
from tagsmith.config import ProjectConfig
from tagsmith.live import live_tagger
from tagsmith.project import Project


@pytest.fixture
def restored() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.parametrize("ms", [0.5, 2.0])
def test_live_tagger_sets_the_switch_interval(tmp_path: Path, restored: None, ms: float) -> None:
    config = ProjectConfig().model_copy(update={"streaming": StreamingConfig(gil_switch_ms=ms)})
    project = Project.init(tmp_path / "p", config=config)
    sys.setswitchinterval(0.005)
    live_tagger(project)
    assert sys.getswitchinterval() == pytest.approx(ms / 1000.0)


def test_default_is_half_a_millisecond() -> None:
    assert StreamingConfig().gil_switch_ms == 0.5


@pytest.mark.parametrize("ms", [0.0, -1.0, 1000.0])
def test_out_of_range_is_refused(ms: float) -> None:
    with pytest.raises(ValidationError, match="gil_switch_ms"):
        StreamingConfig(gil_switch_ms=ms)
