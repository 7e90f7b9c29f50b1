from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.lifecycle_fixtures import Store, build_template, copy_store, make_frame
from training.promotion import LabelledWindow
from training.registry import ModelRegistry


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("registry-template")
    return root, build_template(root)


@pytest.fixture
def store(registry_template: tuple[Path, dict[str, str]], tmp_path: Path) -> Store:
    root, versions = registry_template
    return copy_store(root, versions, tmp_path / "store")


@pytest.fixture
def registry(store: Store) -> ModelRegistry:
    return ModelRegistry(
        store.uri, store.root / "history.sqlite", store.root / "locks", lock_timeout=2.0
    )


def _window(task: str) -> LabelledWindow:
    frame, churn, value = make_frame(600, seed=7)
    labels: np.ndarray = churn if task == "churn" else value
    return LabelledWindow(task, pd.Timestamp("2024-06-01"), 90, frame, labels)


@pytest.fixture
def churn_window() -> LabelledWindow:
    return _window("churn")


@pytest.fixture
def value_window() -> LabelledWindow:
    return _window("value")
