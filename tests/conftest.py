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
def _mlflow_uris_cleared() -> Iterator[None]:
    """Start and end every test with MLflow's process-wide URIs (and their environment
    variables) unset.

    ``mlflow.set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into ``os.environ``, and
    training sets it for the command's process. A module or session fixture that trains
    would otherwise leave it set for every later test in the same worker, and the
    projects those tests build honour the variable: they would read another store's
    champions. Function fixtures run after the wider ones, so clearing here also undoes
    what those left behind.
    """
    _clear_mlflow_uris()
    yield
    _clear_mlflow_uris()


def _clear_mlflow_uris() -> None:
    if "mlflow" in sys.modules:
        from scoring.loading import restore_mlflow_uris

        restore_mlflow_uris((None, None, None, None))
    else:  # not imported yet: MLflow's own URIs are unset
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            os.environ.pop(key, None)
