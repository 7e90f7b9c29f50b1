"""Shared helpers of the import tests: a store in tmp_path and a checked import."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.importer import ImportReport, SourceOptions, import_facts
from features.schema import FactsConfig
from features.store import FactStore

NOW = pd.Timestamp("2021-06-01T00:00:00Z")
DATA = Path(__file__).parents[1] / "data" / "facts"
CDNOW_OPTIONS = SourceOptions(
    mapping={"customer_id": "0", "occurred_at": "1", "quantity": "2", "amount": "3"},
    event_type="purchase",
    date_format="%Y%m%d",
)


def run_import(
    root: Path,
    *,
    events: Path | None = None,
    customers: Path | None = None,
    config: FactsConfig | None = None,
    events_options: SourceOptions | None = None,
    customers_options: SourceOptions | None = None,
    derive_customers: bool | None = None,
    now: pd.Timestamp = NOW,
) -> ImportReport:
    """Import into the store under ``root`` and assert the per-file row accounting."""
    report = import_facts(
        FactStore(root / "facts"),
        config=config or FactsConfig(),
        quarantine_dir=root / "quarantine",
        now=now,
        events=events,
        customers=customers,
        events_options=events_options,
        customers_options=customers_options,
        derive_customers=derive_customers,
    )
    for counts in report.files:
        assert counts.rows_read == counts.accepted + counts.total_quarantined, counts
    if report.quarantine_path is not None:
        quarantine = pd.read_csv(report.quarantine_path)
        assert len(quarantine) == sum(c.total_quarantined for c in report.files)
    else:
        assert sum(c.total_quarantined for c in report.files) == 0
    return report


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` (bytes exactly as given, no newline translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path
