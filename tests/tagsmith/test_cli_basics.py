from __future__ import annotations

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
