"""Users never see a traceback: the benchmark scripts too.

A benchmark pointed at a folder that is not a Tagsmith project (a typo in
``--project``) says so in one line and exits 2, like the CLI, instead of printing
:class:`tagsmith.errors.ProjectNotFoundError`'s traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["live_scoring.py", "serving.py"])
def test_a_benchmark_given_no_project_says_so_without_a_traceback(
    script: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TAGSMITH_CONFIG_DIR": str(tmp_path / "cfg")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert "Expected a Tagsmith project in" in done.stderr
    assert str(tmp_path) in done.stderr
