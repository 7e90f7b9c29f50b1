"""What goes over the wire: canonical JSON, idempotency keys, batch bodies.

A delivery is a batch of items for one destination. Each item (one trigger event or
one audience-sync member change) has an idempotency key derived from what it is, so
recomputing it after a crash gives the same key, and a receiver can drop duplicates
per item. The batch has its own key (from its items' keys) sent as the
``Idempotency-Key`` header; its body is built once and stored, so every retry sends the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SCHEMA", "batch_body", "batch_key", "canonical", "item_key", "plain"]

# Version of the body format, sent in every batch.
SCHEMA = "tagsmith.delivery/1"


def canonical(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON (the same value always gives the same bytes)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def item_key(*parts: object) -> str:
    """A 32-hex-digit idempotency key from the parts that identify an item."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def batch_key(destination: str, keys: Sequence[str]) -> str:
    """The idempotency key of a batch: its destination and its items' keys."""
    return item_key("batch", destination, *keys)


def batch_body(destination: str, key: str, payloads: Sequence[bytes]) -> bytes:
    """The body of a batch from its items' stored JSON payloads (bytes, in order)."""
    head = canonical({"schema": SCHEMA, "batch": key, "destination": destination})
    # Items are stored as canonical JSON already; splice rather than re-encode them.
    return head[:-1] + b',"events":[' + b",".join(payloads) + b"]}"


def plain(value: Any) -> Any:
    """A tag value as JSON: None for missing, bool for flags, else its text."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    return str(value)
