"""Close matches for a misspelt name, shared by every error about an unknown name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["suggest"]


def suggest(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean ...?' for the closest candidates (empty if none is close)."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=3)]
    if not close and len(name) >= 3:
        close = [c for c in pool if name.lower() in c.lower()][:3]
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
