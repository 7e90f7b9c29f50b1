"""Hostile finding 14-6: users never see a traceback.

* ``--as-of`` far outside the data (2999-01-01, 9999-12-31, 0001-01-01) is one clear
  error from the one as-of parser (:func:`features.cutoffs.normalize_as_of`), not an
  ``OverflowError`` from deep in pandas.
* Any exception a command lets escape ends at the CLI's error boundary: one line naming
  the command, the traceback in a log file (``TAGSMITH_LOG_DIR``).
* A read-only project (really read-only: a read-only bind mount, or permissions when
  not root) gives one line per command, no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tags.access
from tests.hostile.cli_helpers import FACTS, make_project, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for the tests that must leave it unchanged (refused commands)."""
    return make_project(tmp_path_factory.mktemp("hostile") / "proj")


AS_OF_COMMANDS = [
    ("tags", "run"),
    ("features", "build"),
    ("tags", "evaluate"),
    ("predict", "churn", "--out", "{tmp}/p.csv"),
]


@pytest.mark.parametrize("as_of", ["2999-01-01", "9999-12-31", "0001-01-01"])
@pytest.mark.parametrize("argv", AS_OF_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_extreme_as_of_is_one_clear_error(
    shared_project: Path, tmp_path: Path, argv: tuple[str, ...], as_of: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = run(shared_project, *args, "--as-of", as_of)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Expected an as-of date from 1900-01-01 to before 2200-01-01" in result.output
    assert as_of in result.output


def test_unexpected_exception_is_one_line_and_a_log_file(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    monkeypatch.setenv("TAGSMITH_LOG_DIR", str(logs))

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(tags.access.TagReader, "export", boom)
    result = run(project, "tags", "export", "--out", str(tmp_path / "x.csv"), role="marketing")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: tagsmith tags export: failed unexpectedly (RuntimeError")
    assert "Traceback" not in result.output
    (log,) = logs.glob("crash-*.log")
    assert str(log) in result.output.replace("\n", "")
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text
    assert "simulated bug" in text


def test_debug_variable_lets_the_traceback_through(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGSMITH_DEBUG", "1")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(tags.access.TagReader, "export", boom)
    result = run(project, "tags", "export", "--out", str(tmp_path / "x.csv"), role="marketing")
    assert isinstance(result.exception, RuntimeError)


READ_ONLY_COMMANDS = [
    ("tags", "run", "--as-of", "2021-06-01"),
    ("tags", "export", "--out", "{tmp}/x.csv"),
    ("facts", "import", "--events", str(FACTS / "events.csv")),
    ("features", "build", "--as-of", "2021-06-01"),
    ("store", "backup", "{tmp}/bk"),
]


def _read_only_runner(root: Path) -> list[str] | None:
    """A command prefix that runs with ``root`` read-only, or None when impossible here."""
    if os.geteuid() != 0:
        return []  # plain permissions bind a non-root user
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run(
        [
            unshare,
            "-m",
            "sh",
            "-c",
            f"mount --bind {root} {root} && "
            f"mount -o remount,ro,bind {root} && ! touch {root}/.probe",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return None
    return [
        unshare,
        "-m",
        "sh",
        "-c",
        f'mount --bind {root} {root} && mount -o remount,ro,bind {root} && exec "$@"',
        "ro",
    ]


@pytest.mark.parametrize("argv", READ_ONLY_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_only_project_is_one_line(
    project: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    prefix = _read_only_runner(project)
    if prefix is None:
        pytest.skip("cannot make a folder read-only here (root without mount namespaces)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [a.replace("{tmp}", str(out_dir)) for a in argv]
    if not prefix:
        for path in [project, *project.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    env = {**os.environ, "TAGSMITH_ROLE": "admin", "TAGSMITH_LOG_DIR": str(tmp_path / "logs")}
    env.pop("TAGSMITH_DEBUG", None)
    if args[1] == "export":
        env["TAGSMITH_ROLE"] = "marketing"
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "tagsmith", "--project", str(project), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        if not prefix:
            for path in [project, *project.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert str(project) in done.stderr.replace("\n", "")
    assert "in use by another process" not in done.stderr  # nobody holds it: finding 14-7
