from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tagsmith import __version__
from tagsmith.cli import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "init" in result.output
    assert "--project" in result.output


def test_init_creates_config_and_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    result = CliRunner().invoke(main, ["--project", str(target), "init"])
    assert result.exit_code == 0, result.output
    assert (target / "tagsmith.yaml").is_file()
    assert (target / "data").is_dir()


def test_init_twice_is_refused_and_keeps_config(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--project", str(tmp_path), "init"]).exit_code == 0
    before = (tmp_path / "tagsmith.yaml").read_bytes()
    result = runner.invoke(main, ["--project", str(tmp_path), "init"])
    assert result.exit_code == 2
    assert "existing" in result.output
    assert (tmp_path / "tagsmith.yaml").read_bytes() == before


def _numpy_hugepage_madvise(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    code = "import tagsmith, numpy._core.multiarray as m; print(m._get_madvise_hugepage())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_importing_tagsmith_turns_off_numpy_hugepage_madvise_unless_the_user_chose() -> None:
    assert _numpy_hugepage_madvise(None) == "False"
    assert _numpy_hugepage_madvise("1") == "True"
