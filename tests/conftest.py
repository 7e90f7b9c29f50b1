"""Shared fixtures. Environment defaults keep every test offline and local."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Crash logs and per-user state (audit keys) of the CLI go to a throwaway folder, never
# to the home directory of whoever runs the suite.
os.environ.setdefault("TAGSMITH_LOG_DIR", tempfile.mkdtemp(prefix="tagsmith-logs-"))
os.environ.setdefault("TAGSMITH_CONFIG_DIR", tempfile.mkdtemp(prefix="tagsmith-config-"))

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """Folder of tiny hand-checked inputs and expectations."""
    return DATA_DIR
