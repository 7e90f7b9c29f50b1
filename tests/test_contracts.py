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


def test_synthetic_is_forbidden_every_package_but_features() -> None:
    forbidden = _contract("forbidden", "synthetic imports features only")
    assert set(forbidden["forbidden_modules"]) == _packages() - {"features", "synthetic"}


def test_every_cli_command_module_is_independent() -> None:
    commands = {
        f"tagsmith.cli.{p.stem}"
        for p in (ROOT / "tagsmith" / "cli").glob("*.py")
        if not p.stem.startswith("_")
    }
    independent = _contract("independence", "CLI command modules")
    assert set(independent["modules"]) == commands


def _cycles(graph: Any) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_anywhere() -> None:
    """No cycle between any modules of the product, across packages or inside one,
    function-local imports included (the acyclic-siblings contract checks siblings
    only; this checks the whole module graph)."""
    import grimp

    graph = grimp.build_graph(*sorted(_packages()), include_external_packages=False, cache_dir=None)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    import grimp

    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]
