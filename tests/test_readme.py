"""The README a newcomer reads top-down: short, with the flow picture, and links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_is_short_and_in_reading_order() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400
    headings = re.findall(r"(?m)^## (.+)$", text)
    order = ["Quickstart", "Your own data in 10 minutes", "Concepts", "Documentation"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(o)) for o in order]
    assert positions == sorted(positions), headings
    assert "```mermaid" in text.split("## Quickstart")[0]  # the flow picture comes first


def test_every_relative_link_in_the_docs_resolves() -> None:
    for doc in (README, *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
