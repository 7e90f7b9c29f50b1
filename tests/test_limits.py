"""The size limits of scripts/limits.py hold on the repository, and the checker finds offenders."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "limits.py"


def _limits() -> ModuleType:
    spec = importlib.util.spec_from_file_location("limits", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["limits"] = module
    spec.loader.exec_module(module)
    return module


def test_repository_within_limits() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_known_offences_still_exist_so_the_list_only_shrinks() -> None:
    limits = _limits()
    found = {o.key for o in limits.all_offences()}
    fixed = set(limits.KNOWN) - found
    assert not fixed, f"remove these from KNOWN in scripts/limits.py: {sorted(fixed)}"


def test_offenders_are_found(tmp_path: Path) -> None:
    limits = _limits()
    (tmp_path / "pkg").mkdir()
    long_body = "\n".join(f"    x{i} = {i}" for i in range(limits.MAX_FUNCTION_LINES))
    (tmp_path / "pkg" / "big.py").write_text(
        "class A:\n    @staticmethod\n    def long():\n"
        + long_body.replace("    ", "        ")
        + "\n\n\ndef short():\n    return 1\n"
        + "\n" * limits.MAX_FILE_LINES,
        encoding="utf-8",
    )
    (tmp_path / "pkg" / "ok.py").write_text("def f():\n" + long_body[:40] + "\n")
    # Exempt: tests and the simulator.
    for exempt in ("tests/test_big.py", "synthetic/gen.py"):
        (tmp_path / exempt).parent.mkdir(exist_ok=True)
        (tmp_path / exempt).write_text("\n" * (limits.MAX_FILE_LINES + 5))
    found = {o.key: o for o in limits.all_offences(tmp_path)}
    assert set(found) == {"pkg/big.py", "pkg/big.py::A.long"}
    # Decorator, def line and body are all the function's lines.
    assert found["pkg/big.py::A.long"].size == limits.MAX_FUNCTION_LINES + 2
    assert found["pkg/big.py::A.long"].line == 2
