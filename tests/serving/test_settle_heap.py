"""``settle_heap``: what is loaded leaves the collector's generations; young ones grow."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from serving.state import settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_loaded_objects_are_frozen_and_thresholds_raised(restored_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [[i] for i in range(1_000)]  # what a runtime loaded: lives as long as the process

    settle_heap()

    assert gc.get_threshold() == (50_000, 50, 1_000)
    assert gc.get_freeze_count() >= len(kept)
