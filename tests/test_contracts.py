"""The import-linter contracts cover every package and every CLI command module.

import-linter checks only what a contract names: a new package left out of
``root_packages`` or of the acyclic-siblings contract, or a new command module left out
of the independence contract, would escape the rules of docs/architecture.md unseen.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOT_PRODUCT = {"tests"}


def _importlinter() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]


def _contract(kind: str, name_part: str) -> dict[str, Any]:
    found = [
        c
        for c in _importlinter()["contracts"]
        if c["type"] == kind and name_part.lower() in c["name"].lower()
    ]
    assert len(found) == 1, (kind, name_part, [c["name"] for c in found])
    return found[0]


def _packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_PRODUCT


def test_every_package_is_a_root_package_and_has_no_inner_cycle() -> None:
    assert set(_importlinter()["root_packages"]) == _packages()
    acyclic = _contract("acyclic_siblings", "cycles")
    # A new package joins it (docs/architecture.md, "Adding a package").
    assert set(acyclic["ancestors"]) == _packages()


def test_every_package_but_tagsmith_is_forbidden_synthetic() -> None:
    forbidden = _contract("forbidden", "only tagsmith imports synthetic")
    assert set(forbidden["source_modules"]) == _packages() - {"tagsmith", "synthetic"}


def test_every_cli_command_module_is_independent() -> None:
    commands = {
        f"tagsmith.cli.{p.stem}"
        for p in (ROOT / "tagsmith" / "cli").glob("*.py")
        if not p.stem.startswith("_")
    }
    independent = _contract("independence", "CLI command modules")
    assert set(independent["modules"]) == commands
