"""Shared fixtures. Environment defaults keep every test offline and local."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _mlflow_uris_restored() -> Iterator[None]:
    """Put MLflow's process-wide tracking/registry URIs and their environment variables
    back after each test.

    ``mlflow.set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into ``os.environ``; a
    test that leaves it set makes later tests in the same worker (and the projects they
    build, which honour the variable) read and register models in another store.
    """
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    if "mlflow" in sys.modules:
        from scoring.loading import saved_mlflow_uris

        saved = saved_mlflow_uris()
    else:  # not imported yet: MLflow's own URIs are unset
        saved = (None, None, *(os.environ.get(k) for k in keys))
    yield
    if "mlflow" in sys.modules:
        from scoring.loading import restore_mlflow_uris

        restore_mlflow_uris(saved)
    else:
        for key, value in zip(keys, saved[2:], strict=True):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
