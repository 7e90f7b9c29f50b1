"""CLI start-up and shape: lazy imports, every command listed, old spellings as aliases.

`tagsmith --help` and `--version` must not import the heavy libraries, nor must the
commands of ``tagsmith.cli.LIGHT_COMMANDS`` when they run (the figures are in
benchmarks/cli_startup.py); the command tree is assembled lazily from
``tagsmith.cli.LAZY_COMMANDS``, whose one-line help must match the commands' own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tagsmith.cli import LAZY_COMMANDS, LIGHT_COMMANDS, _GroupStub, main

REPO = Path(__file__).resolve().parents[2]

# Libraries that each cost 0.1-2 s to import; none is needed to print help or the version.
HEAVY = (
    "sklearn", "lightgbm", "mlflow", "bentoml", "pandas", "numpy", "scipy", "pyarrow",
    "duckdb", "nats", "aiohttp", "httpx", "pydantic", "yaml", "rich", "lifetimes", "jinja2",
)  # fmt: skip

_PROBE = """
import json, sys
from tagsmith.cli import main
try:
    main({args!r}, prog_name="tagsmith")
except SystemExit:
    pass
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy), file=sys.stderr)
"""


def _imported_heavy(args: list[str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=args, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    imported: list[str] = json.loads(proc.stderr.strip().splitlines()[-1])
    return imported


@pytest.mark.parametrize("args", [["--help"], ["--version"], []], ids=["help", "version", "bare"])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    imported = _imported_heavy(args)
    assert imported == [], (
        f"`tagsmith {' '.join(args)}` imported {imported}: register new top-level commands "
        "in tagsmith.cli.LAZY_COMMANDS and keep heavy imports out of tagsmith/__init__.py"
    )


GROUPS = [n for n, e in LAZY_COMMANDS.items() if e.commands is not None]


@pytest.mark.parametrize("group", GROUPS)
def test_a_groups_help_imports_no_heavy_library(group: str) -> None:
    imported = _imported_heavy([group, "--help"])
    assert imported == [], (
        f"`tagsmith {group} --help` imported {imported}: keep the group's "
        "LazyCommand.commands in tagsmith.cli.LAZY_COMMANDS"
    )


# `serve` has options of its own, so its module is imported for its help: it may load the
# project's config (pydantic, yaml) and rich, but none of the libraries that take seconds.
@pytest.mark.parametrize("args", [["serve", "--help"], ["serve", "keys", "--help"]])
def test_serve_help_imports_no_ml_library(args: list[str]) -> None:
    imported = set(_imported_heavy(args)) - {"pydantic", "yaml", "rich"}
    assert imported == set(), f"`tagsmith {' '.join(args)}` imported {sorted(imported)}"


# What a command that reads no data must not import: reading the project's config, the
# catalogue (rules are parsed with lark) and printing (rich) are its real needs.
DATA_LIBRARIES = (
    *(h for h in HEAVY if h not in ("pydantic", "yaml", "rich")), "matplotlib", "pyspark",
)  # fmt: skip
# serving's errors subclass BentoML's exceptions; the key file's command pays for that
# module (tens of milliseconds), not for BentoML's service machinery.
_ALLOWED = {("serve", "keys", "list"): {"bentoml", "httpx"}}

_RUN_PROBE = """
import json, sys
from tagsmith.cli import main
try:
    main({args!r}, prog_name="tagsmith")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _run_imports(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_PROBE.format(args=args, heavy=DATA_LIBRARIES)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=True,
    )
    found = json.loads(proc.stderr.strip().splitlines()[-1])
    return found["code"], found["heavy"]


@pytest.fixture(scope="module")
def new_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("light") / "shop"
    result = CliRunner().invoke(main, ["--project", str(root), "init"])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("command", LIGHT_COMMANDS, ids=" ".join)
def test_a_light_command_runs_without_the_data_libraries(
    command: tuple[str, ...], new_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "fresh" if command == ("init",) else new_project
    code, imported = _run_imports(["--project", str(root), *command], tmp_path)
    assert code == 0, f"`tagsmith {' '.join(command)}` failed on a new project"
    unexpected = sorted(set(imported) - _ALLOWED.get(command, set()))
    assert unexpected == [], (
        f"`tagsmith {' '.join(command)}` imported {unexpected}: import them inside the "
        "functions that read data, and keep the command's module (and what it loads to read "
        "the project) free of them"
    )


def test_the_run_probe_sees_a_command_that_reads_data(new_project: Path, tmp_path: Path) -> None:
    # The guard above must be able to fail: `facts summary` opens the fact store (pandas).
    code, imported = _run_imports(["--project", str(new_project), "facts", "summary"], tmp_path)
    assert code == 0
    assert "pandas" in imported


LIGHT = [
    (group, name, target)
    for group, entry in LAZY_COMMANDS.items()
    for name, target in (entry.light or {}).items()
]


@pytest.mark.parametrize(("group", "name", "target"), LIGHT, ids=[f"{g} {n}" for g, n, _ in LIGHT])
def test_a_light_entry_is_the_groups_own_command(group: str, name: str, target: str) -> None:
    root = click.Context(main, info_name="tagsmith", **main.context_settings)
    stub = main.get_command(root, group)
    assert isinstance(stub, _GroupStub)
    assert name in stub.listed, f"LAZY_COMMANDS[{group!r}].light names an unlisted command"
    alone = stub.get_command(click.Context(stub, parent=root), name)
    own = stub.real().get_command(click.Context(stub.real(), parent=root), name)
    assert alone is not None
    assert alone is own, f"{target} is not the command the {group} group runs as {name!r}"
    module = target.partition(":")[0]
    probe = f"import json, sys, {module}; print(json.dumps([m.split('.')[0] for m in sys.modules]))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert set(json.loads(loaded.stdout)) & set(DATA_LIBRARIES) == set(), module


def test_the_probe_sees_a_heavy_import() -> None:
    # The guard above must be able to fail: a command that does load pandas is reported.
    assert "pandas" in _imported_heavy(["tags", "runs", "--help"])


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_stubs_help_is_the_groups_own(group: str) -> None:
    # The root's own settings (-h): click caches a command's help option on first use, so
    # a context without them would change the help other tests see.
    root = click.Context(main, info_name="tagsmith", terminal_width=100, **main.context_settings)
    stub = main.get_command(root, group)
    assert isinstance(stub, _GroupStub)
    real = stub.real()
    assert type(real) is click.Group, "groups with options of their own cannot be stubs"
    assert not real.params or [p.name for p in real.params] == ["help"]
    shown = stub.get_help(click.Context(stub, info_name=group, parent=root))
    own = real.get_help(click.Context(real, info_name=group, parent=root))
    assert shown == own, f"LAZY_COMMANDS[{group!r}].commands differs from the group's commands"


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


@pytest.mark.parametrize("name", [n for n, e in LAZY_COMMANDS.items() if not e.replaced_by])
def test_registry_help_matches_the_command(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert _first_paragraph(command.help) == LAZY_COMMANDS[name].help


def _walk(group: click.Group, ctx: click.Context, path: list[str]) -> list[list[str]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if command.hidden:
            continue
        found.append([*path, name])
        if isinstance(command, click.Group):
            found.extend(_walk(command, click.Context(command, parent=ctx), [*path, name]))
    return found


def test_every_command_is_listed_in_its_groups_help() -> None:
    runner = CliRunner()
    paths = _walk(main, click.Context(main), [])
    assert ["models", "train"] in paths
    assert ["data", "generate"] in paths
    assert ["train"] not in paths
    for path in paths:
        result = runner.invoke(main, [*path[:-1], "--help"])
        assert result.exit_code == 0, result.output
        section = result.output.split("Commands:")[1]
        listed = {line.split()[0] for line in section.splitlines() if line.startswith("  ")}
        assert path[-1] in listed, (path, result.output)


@pytest.mark.parametrize(
    ("old", "new"),
    [("train", "models train"), ("evaluate", "models evaluate"), ("predict", "models predict")],
)
def test_old_verbs_are_hidden_aliases_with_the_same_options(old: str, new: str) -> None:
    ctx = click.Context(main)
    alias = main.get_command(ctx, old)
    models = main.get_command(ctx, "models")
    assert alias is not None
    assert isinstance(models, click.Group)
    target = models.get_command(click.Context(models, parent=ctx), new.split()[1])
    assert target is not None
    assert alias.hidden
    assert alias.callback is target.callback
    assert [p.name for p in alias.params] == [p.name for p in target.params]
    assert old not in CliRunner().invoke(main, ["--help"]).output.split("Commands:")[1].split()


def test_old_generate_spelling_works_and_says_what_replaces_it(tmp_path: Path) -> None:
    runner = CliRunner()
    old = runner.invoke(
        main, ["generate", "--customers", "20", "--seed", "1", "--out", str(tmp_path / "a")]
    )
    new = runner.invoke(
        main, ["data", "generate", "--customers", "20", "--seed", "1", "--out", str(tmp_path / "b")]
    )
    assert old.exit_code == 0, old.output
    assert new.exit_code == 0, new.output
    assert "`tagsmith generate` is now `tagsmith data generate`" in old.stderr
    assert "is now" not in new.stderr
    for name in ("customers.csv", "events.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
