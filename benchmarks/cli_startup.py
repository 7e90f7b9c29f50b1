"""Benchmark of CLI start-up: ``--version``, ``--help``, every group's ``--help``, and the
commands that read no data (``tagsmith.cli.LIGHT_COMMANDS``: ``tags list``, ``init``...).

Each command runs ``--repeat`` times (default 5) as a fresh process, the way a user or a
script calls it; the median wall time is printed, with the ratio to the reference (a bare
interpreter start in the same environment, measured in the same run) and the verdict
against the 0.5 s target. The light commands run on a project ``init`` made (``init``
itself on a new folder each time). ``facts summary``, which opens the fact store
(pandas, PyArrow, DuckDB), is timed too, to show what a command that reads data pays.

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

from tagsmith.cli import LAZY_COMMANDS, LIGHT_COMMANDS

TAGSMITH = [sys.executable, "-m", "tagsmith"]
TARGET_S = 0.5


def _median_seconds(cmds: list[list[str]], env: dict[str, str]) -> float:
    times = []
    for cmd in cmds:
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
        project = str(Path(tmp) / "shop")
        subprocess.run(
            [*TAGSMITH, "--project", project, "init"], check=True, capture_output=True, env=env
        )
        cases: list[tuple[str, list[list[str]]]] = [
            ("python -c pass (reference)", [[sys.executable, "-c", "pass"]] * args.repeat),
            ("tagsmith --version", [[*TAGSMITH, "--version"]] * args.repeat),
            ("tagsmith --help", [[*TAGSMITH, "--help"]] * args.repeat),
            *[
                (f"tagsmith {name} --help", [[*TAGSMITH, name, "--help"]] * args.repeat)
                for name, entry in LAZY_COMMANDS.items()
                if entry.replaced_by is None
            ],
        ]
        for command in LIGHT_COMMANDS:
            if command == ("init",):
                runs = [
                    [*TAGSMITH, "--project", str(Path(tmp) / f"new{i}"), "init"]
                    for i in range(args.repeat)
                ]
            else:
                runs = [[*TAGSMITH, "--project", project, *command]] * args.repeat
            cases.append((f"tagsmith {' '.join(command)}", runs))
        targeted = len(cases) - 1
        cases.append(
            (
                "tagsmith facts summary (reads the facts)",
                [[*TAGSMITH, "--project", project, "facts", "summary"]] * args.repeat,
            )
        )
        results = [(label, _median_seconds(cmds, env)) for label, cmds in cases]
    reference = results[0][1]
    print(f"median of {args.repeat} fresh processes each (wall time), load {_load()}")
    print(f"{'command':44} {'seconds':>8} {'x reference':>12}")
    for label, seconds in results:
        print(f"{label:44} {seconds:8.3f} {seconds / reference:12.1f}")
    over = [label for label, seconds in results[1 : targeted + 1] if seconds > TARGET_S]
    print(
        f"target {TARGET_S} s for --version, --help, every --help and the light commands: ", end=""
    )
    print(f"over for {', '.join(over)}" if over else "all under")


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
