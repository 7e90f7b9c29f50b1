"""The CLI reference (docs/cli.md), generated from the commands themselves.

``python -m tagsmith.cli._docs > docs/cli.md`` rewrites it; a test fails when the file
differs from what the commands say (so the reference cannot drift).
"""

from __future__ import annotations

import click

__all__ = ["cli_reference"]

_WIDTH = 100


def _walk(
    command: click.Command, ctx: click.Context, path: list[str]
) -> list[tuple[list[str], str]]:
    sections = [(path, command.get_help(ctx))]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(
                sub, info_name=name, parent=ctx, terminal_width=_WIDTH, max_content_width=_WIDTH
            )
            sections.extend(_walk(sub, sub_ctx, [*path, name]))
    return sections


def cli_reference() -> str:
    """Markdown: every visible command's ``--help``, in the order the groups list them."""
    from tagsmith.cli import main

    # The command's own context settings (-h as well as --help), as a real call has them:
    # click caches each command's help option, so docs and calls must agree.
    settings = {**main.context_settings, "terminal_width": _WIDTH, "max_content_width": _WIDTH}
    ctx = click.Context(main, info_name="tagsmith", **settings)
    sections = _walk(main, ctx, ["tagsmith"])
    toc = [f"- [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ in sections if len(path) > 1]
    parts = [
        "# CLI reference",
        "",
        "Generated from the commands' own help by `python -m tagsmith.cli._docs > docs/cli.md`",
        "(`tests/tagsmith/test_cli_docs.py` fails when this file is out of date). Every",
        "command that prints results takes `--format json` (see the README, *Scripting the",
        "CLI*).",
        "",
        *toc,
    ]
    for path, text in sections:
        anchor = "-".join(path)
        parts += ["", f'<a id="{anchor}"></a>', f"## `{' '.join(path)}`", "", "```text"]
        parts += [line.rstrip() for line in text.splitlines()]
        parts += ["```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    click.echo(cli_reference(), nl=False)
