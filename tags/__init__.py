"""Rule and model tags: catalogue, rule engine, tag store, segments, access policy, audit."""

from __future__ import annotations

from tags.errors import TagsError

__all__ = ["TagsError"]
