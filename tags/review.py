"""Sign-off of important tags: a reviewer approves a tag's new definition before apply.

A tag with ``review: required`` (high-value and loyalty tags in the standard library)
may only change when a reviewer has approved exactly the definition being applied: each
sign-off records the tag, its version and fingerprint, the reviewer and their role, the
sample size they looked at and the size change they saw. ``tags apply`` refuses a
changed review-required tag whose fingerprint has no approval.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tags.errors import CatalogueError

__all__ = ["ReviewBook"]


class ReviewBook:
    """Sign-offs in one JSON file (``data/reviews.json``), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        """Every sign-off, oldest first."""
        if not self.path.is_file():
            return []
        try:
            data: list[dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"{self.path}: cannot read the review sign-offs: {exc}") from exc
        return data

    def approvals(self) -> dict[str, str]:
        """Tag id -> the fingerprint of its latest decision, when that was an approval."""
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            latest[str(entry["tag_id"])] = entry
        return {t: str(e["fingerprint"]) for t, e in latest.items() if e["decision"] == "approved"}

    def record(self, entry: Mapping[str, Any]) -> None:
        """Append one decision."""
        entries = [*self.entries(), dict(entry)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(entries, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
