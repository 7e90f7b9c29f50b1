"""docs/cli.md is the commands' own help, regenerated: it cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from tagsmith.cli._docs import cli_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    expected = cli_reference()
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: run `.venv/bin/python -m tagsmith.cli._docs > docs/cli.md`"
    )


def test_cli_reference_lists_every_visible_command() -> None:
    text = cli_reference()
    for path in ("tagsmith models train", "tagsmith data generate", "tagsmith tags run"):
        assert f"## `{path}`" in text
    assert "## `tagsmith train`" not in text  # old spellings stay hidden
