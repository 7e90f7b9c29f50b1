"""The CLI's shape: every command module is under the independence contract."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tagsmith.cli

REPO = Path(__file__).resolve().parents[2]


def test_every_command_module_is_in_the_independence_contract() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (independence,) = [
        c for c in contracts if c["type"] == "independence" and "tagsmith.cli" in c["modules"][0]
    ]
    folder = Path(tagsmith.cli.__file__).parent
    commands = {f"tagsmith.cli.{p.stem}" for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert set(independence["modules"]) == commands
