"""Benchmark of CLI start-up: ``--version``, ``--help``, every group's ``--help``.

Each command runs ``--repeat`` times (default 5) as a fresh process, the way a user or a
script calls it; the median wall time is printed, with the ratio to the reference (a bare
interpreter start in the same environment, measured in the same run) and the verdict
against the 0.5 s target. A command that needs a project (``tags list``) is timed too,
to show what loading a project and the heavy libraries cost once a command really works.

Usage::

    PYTHONPATH=. python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tagsmith.cli import LAZY_COMMANDS

TAGSMITH = [sys.executable, "-m", "tagsmith"]
TARGET_S = 0.5


def _median_seconds(cmd: list[str], repeat: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [*TAGSMITH, "--project", tmp, "init"], check=True, capture_output=True, env=env
        )
        cases = [
            ("python -c pass (reference)", [sys.executable, "-c", "pass"]),
            ("tagsmith --version", [*TAGSMITH, "--version"]),
            ("tagsmith --help", [*TAGSMITH, "--help"]),
            *[
                (f"tagsmith {name} --help", [*TAGSMITH, name, "--help"])
                for name, entry in LAZY_COMMANDS.items()
                if entry.replaced_by is None
            ],
        ]
        targeted = len(cases) - 1
        cases.append(
            ("tagsmith tags list (loads a project)", [*TAGSMITH, "--project", tmp, "tags", "list"])
        )
        results = [(label, _median_seconds(cmd, args.repeat, env)) for label, cmd in cases]
    reference = results[0][1]
    print(f"median of {args.repeat} fresh processes each (wall time)")
    print(f"{'command':40} {'seconds':>8} {'x reference':>12}")
    for label, seconds in results:
        print(f"{label:40} {seconds:8.3f} {seconds / reference:12.1f}")
    over = [label for label, seconds in results[1 : targeted + 1] if seconds > TARGET_S]
    print(f"target {TARGET_S} s for --version, --help and every command's --help: ", end="")
    print(f"over for {', '.join(over)}" if over else "all under")


if __name__ == "__main__":
    main()
