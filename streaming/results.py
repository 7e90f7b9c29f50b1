"""What one micro-batch of real-time tagging did (:class:`ApplyResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ApplyResult"]


@dataclass
class ApplyResult:
    """What one micro-batch did.

    Attributes:
        received: Events in the batch.
        accepted: Events stored now.
        duplicates: Events whose ``event_id`` was stored already (not stored again).
        quarantined: Rejected events per reason code (the file import's codes).
        quarantine_file: Where the rejected rows were appended.
        customers: Customers of this batch re-tagged.
        changes: Tag values that changed in the micro-batch that carried the batch
            (transitions recorded; batches that arrived together share one).
        as_of: The as-of of the re-tag.
        thresholds_from: Run id whose population thresholds the rules used (None: no
            batch run yet; population rules then use the re-tagged customers only).
        seq: The live write's sequence number (0: nothing written).
        seconds: Wall time of the batch.
        rows: The live rows written for this batch's customers (for an in-process
            reader such as the service; empty when the tagger has listeners, which got
            the micro-batch's rows).
        batches: Batches applied together in that micro-batch (1: this one alone).
        customer_ids: This batch's customers re-tagged.
    """

    received: int
    accepted: int
    duplicates: int
    quarantined: dict[str, int]
    quarantine_file: Path | None
    customers: int
    changes: int
    as_of: pd.Timestamp
    thresholds_from: str | None
    seq: int
    seconds: float
    rows: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    batches: int = 1
    customer_ids: list[str] = field(repr=False, default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The answer of ``POST /events`` and the consumer's log line."""
        return {
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": self.quarantined,
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
            "customers_retagged": self.customers,
            "tag_changes": self.changes,
            "as_of": self.as_of.isoformat(),
            "thresholds_from_run": self.thresholds_from,
            "seconds": round(self.seconds, 4),
        }
