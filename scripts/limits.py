"""Size limits: no non-test Python file over 600 lines, no function over 120 lines.

Run ``python scripts/limits.py`` from the repository root: it prints each offender
(file, line, what, size, limit) and exits 1 when there is any offender not listed in
``KNOWN``. The simulator package ``synthetic/`` is exempt: its generators read as one
story each, and splitting them would hide the data-generating process.

Why the limits: a file or function past them has stopped doing one thing; the split
points (by responsibility) are what a newcomer needs to find their way.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 120

ROOT = Path(__file__).resolve().parent.parent
# Not product code (tests, the environment, caches) or exempt (the simulator).
EXCLUDED_DIRS = frozenset(
    {"tests", "synthetic", ".venv", "venv", "build", "dist", "node_modules", ".git", ".demo"}
)

# Offences known and owned by someone else, to be removed as they are fixed; the test
# asserts each still exists, so this dict only shrinks. Key: "path" (file size) or
# "path::qualified.function"; value: lines measured when listed.
KNOWN: dict[str, int] = {}


@dataclass(frozen=True)
class Offence:
    """One file or function over its limit."""

    key: str
    path: str
    line: int
    what: str
    size: int
    limit: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} has {self.size} lines (limit {self.limit})"


def python_files(root: Path = ROOT) -> list[Path]:
    """Every non-test, non-simulator Python file under ``root``, sorted."""
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in EXCLUDED_DIRS or part.startswith(".") for part in parts[:-1]):
            continue
        if parts[-1].startswith("test_") or parts[-1] == "conftest.py":
            continue
        files.append(path)
    return files


def _functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def offences_in(path: Path, root: Path = ROOT) -> list[Offence]:
    """The offences of one file: its own length, then each function's, decorators included."""
    rel = path.relative_to(root).as_posix()
    text = path.read_text(encoding="utf-8")
    found = []
    n_lines = len(text.splitlines())
    if n_lines > MAX_FILE_LINES:
        found.append(Offence(rel, rel, 1, "file", n_lines, MAX_FILE_LINES))
    for name, node in _functions(ast.parse(text, filename=rel)):
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        size = end - start + 1
        if size > MAX_FUNCTION_LINES:
            what = f"function {name}"
            found.append(Offence(f"{rel}::{name}", rel, start, what, size, MAX_FUNCTION_LINES))
    return found


def all_offences(root: Path = ROOT) -> list[Offence]:
    """Every offence in the repository's product code."""
    return [offence for path in python_files(root) for offence in offences_in(path, root)]


def main() -> int:
    """Print offenders; exit 1 on any not in ``KNOWN``."""
    offences = all_offences()
    new = [o for o in offences if o.key not in KNOWN]
    for offence in offences:
        tag = "known" if offence.key in KNOWN else "OVER"
        print(f"{tag}: {offence}")
    fixed = sorted(set(KNOWN) - {o.key for o in offences})
    for key in fixed:
        print(f"fixed, remove from KNOWN in scripts/limits.py: {key}")
    if new or fixed:
        return 1
    print(f"limits ok: files <= {MAX_FILE_LINES} lines, functions <= {MAX_FUNCTION_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
