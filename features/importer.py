"""Import customers and events files into the fact store: read, validate, commit.

The one function here, :func:`import_facts`, is the I/O edge that ties
:mod:`features.io` (reading), :mod:`features.validation` (pure checks) and
:mod:`features.store` (atomic commit) together. It holds the store's lock from
reading the stored facts to committing, so two imports cannot interleave.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from features import chunks
from features.chunks import read_chunks
from features.errors import FactFileError
from features.event_blocks import EventBlocks, EventsTally, PreparedBlock
from features.io import Delimiter, RawTable, ReadOptions, expand_paths, read_table
from features.pipeline import Ahead, ahead
from features.quarantine import FileCounts
from features.schema import (
    CUSTOMER_BASE_COLUMNS,
    EVENT_COLUMNS,
    TIMESTAMP_DTYPE,
    FactsConfig,
    ReasonCode,
    arrow_table,
    check_events,
    customer_dtypes,
)
from features.spill import EventSpill
from features.store import FactStore
from features.store_files import StoredKeys, StoredRows
from features.validation import Dedupe, empty_events, validate_customers

__all__ = ["ImportReport", "SourceOptions", "import_facts"]

# Spilled events of a running import: a hidden folder of the fact store.
SPILL_PREFIX = ".spill-"
# Bytes of the shortest plausible event line: sizes the spill's customer ranges.
_MIN_BYTES_PER_EVENT = 40


@dataclass(frozen=True)
class SourceOptions:
    """How to read and map one kind of input (customers or events).

    Attributes:
        mapping: ``target -> source`` columns (``--map``).
        date_format: ``strptime`` format of timestamps; ``None``: ISO 8601.
        delimiter: ``None`` sniffs; else ``","``, ``"\\t"``, ``";"``, ``"|"``,
            ``"whitespace"``.
        header: ``None`` sniffs whether the first line is a header.
        encoding: ``None`` detects UTF-8 / UTF-8-BOM / UTF-16-BOM / GBK.
        event_type: Constant event type for events files without that column.
        dedupe: Identical event rows: ``auto`` keeps those without an order id as
            separate events; ``exact`` treats every identical row as a duplicate.
    """

    mapping: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None
    delimiter: Delimiter | None = None
    header: bool | None = None
    encoding: str | None = None
    event_type: str | None = None
    dedupe: Dedupe = "auto"

    def read_options(self, targets: list[str]) -> ReadOptions:
        """Reading options; canonical names and mapped sources mark a header line."""
        names = {t.lower() for t in targets} | {s.lower() for s in self.mapping.values()}
        return ReadOptions(
            delimiter=self.delimiter,
            header=self.header,
            encoding=self.encoding,
            known_names=frozenset(n for n in names if not n.isdigit()),
        )


@dataclass
class ImportReport:
    """What one import did.

    Attributes:
        import_id: Identifier shared by the import log entries of this run.
        imported_at: The ``now`` of the run.
        files: Counts per file read (customers files first).
        customers_added: New customers stored (from files, derived or created).
        events_added: New events stored.
        customers_derived: Customers derived from events because no customers file
            was given (signup = first event).
        customers_created: Customers created for unknown ids under
            ``facts.unknown_customer: create``.
        quarantine_path: The quarantine CSV of this run, if any row was rejected.
        repeated_files: Sources whose exact bytes had been imported before.
        store: The store's manifest after the import.
        identical_kept: Event rows identical to an earlier row of the import, kept as
            separate events (no order id; see ``SourceOptions.dedupe``).
    """

    import_id: str
    imported_at: pd.Timestamp
    files: list[FileCounts]
    customers_added: int
    events_added: int
    customers_derived: int
    customers_created: int
    quarantine_path: Path | None
    repeated_files: list[str]
    store: dict[str, Any]
    identical_kept: int = 0

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        """Rejected rows per reason over all files."""
        totals: dict[str, int] = {}
        for counts in self.files:
            for reason, n in counts.quarantined.items():
                totals[reason] = totals.get(reason, 0) + n
        return dict(sorted(totals.items()))


def _read_all(paths: list[Path], options: ReadOptions) -> list[RawTable]:
    return [read_table(p, options) for p in paths]


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pcsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return bytes(sink.getvalue())


def _quarantine_name(now: pd.Timestamp, sources: list[Path], directory: Path) -> Path:
    # The source's stem: the quarantine file is itself a .csv (no "events.csv.csv").
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", sources[0].stem) if sources else "import"
    base = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{stem}"
    path = directory / f"{base}.csv"
    serial = 1
    while path.exists():
        serial += 1
        path = directory / f"{base}-{serial}.csv"
    return path


def import_facts(
    store: FactStore,
    *,
    config: FactsConfig,
    quarantine_dir: Path,
    now: pd.Timestamp,
    events: Path | None = None,
    customers: Path | None = None,
    events_options: SourceOptions | None = None,
    customers_options: SourceOptions | None = None,
    derive_customers: bool | None = None,
    erased: Callable[[pd.Series], np.ndarray] | None = None,
) -> ImportReport:
    """Validate files and add what passes to the store, atomically.

    Args:
        store: The fact store to add to.
        config: The project's facts config.
        quarantine_dir: Folder for this run's quarantine CSV.
        now: Import time (UTC): the reference for the future-event check.
        events: Events file or folder.
        customers: Customers file or folder (imported first, so events may refer to
            customers it adds).
        events_options: How to read and map events.
        customers_options: How to read and map customers.
        derive_customers: Create a customer for every unknown id from its first
            event. ``None``: derive when no customers file is given and the store
            holds no customer yet (a bare transaction log).
        erased: Marks erased customers' ids: their rows are quarantined as ``erased``.

    Raises:
        FactFileError: A file cannot be imported; nothing is written.
        StoreError: The store is locked by another import.
    """
    if events is None and customers is None:
        raise FactFileError("Expected --events FILE and/or --customers FILE. Got neither.")
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    events_options = events_options or SourceOptions()
    customers_options = customers_options or SourceOptions()
    customer_paths = expand_paths(customers) if customers is not None else []
    event_paths = expand_paths(events) if events is not None else []
    dtypes = customer_dtypes(config)
    import_id = uuid.uuid4().hex[:12]
    events_read = events_options.read_options(list(EVENT_COLUMNS))

    with (
        store.lock(),
        _new_spill(store, import_id, event_paths) as spill,
        StoredKeys(store.event_paths(), store.keys) as stored_keys,  # read once, all blocks
        _read_first(event_paths, events_read) as first_events,
    ):
        _remove_unpublished(quarantine_dir, store.facts_dir, keep=spill.directory)
        stored_customers = _stored_customers(store, dtypes)
        files, quarantines, new_customers = _checked_customers(
            customer_paths,
            customers_options,
            config=config,
            now=now,
            stored=stored_customers,
            erased=erased,
        )

        events_added = derived = created = identical_kept = 0
        if event_paths:
            # A bare transaction log (no customers file, none stored): derive customers.
            derive = _derive(derive_customers, customer_paths, stored_customers)
            checked_events = _validate_event_files(
                event_paths,
                events_options,
                first_read=first_events,
                config=config,
                now=now,
                known=[stored_customers, new_customers],
                stored_events=stored_keys.matching,
                derive=derive,
                erased=erased,
                spill=spill,
            )
            files += checked_events.files
            quarantines.append(checked_events.quarantine)
            events_added = checked_events.accepted
            identical_kept = checked_events.identical_kept
            made = checked_events.created_customers
            if len(made):
                derived, created = (len(made), 0) if derive else (0, len(made))
                new_customers = _with_made(new_customers, made, dtypes)

        sources = event_paths or customer_paths
        quarantine_path, extra_files = _quarantine_file(quarantines, now, sources, quarantine_dir)
        repeated = _repeated_sources(store, files)
        store.add(
            customers=pd.concat([stored_customers, new_customers], ignore_index=True),
            new_events=_new_events(spill),
            hashes=spill.hash_index(),
            log_entries=_log_entries(
                files, import_id=import_id, now=now, quarantine=quarantine_path, derived=derived
            ),
            extra_files=extra_files,
            now=now,
        )
        manifest = store.manifest()

    return ImportReport(
        import_id=import_id,
        imported_at=now,
        files=files,
        customers_added=len(new_customers),
        events_added=events_added,
        customers_derived=derived,
        customers_created=created,
        quarantine_path=quarantine_path,
        repeated_files=repeated,
        store=manifest,
        identical_kept=identical_kept,
    )


def _derive(
    derive_customers: bool | None, customer_paths: list[Path], stored: pd.DataFrame
) -> bool:
    if derive_customers is not None:
        return derive_customers
    return not customer_paths and stored.empty


def _new_spill(store: FactStore, import_id: str, event_paths: list[Path]) -> EventSpill:
    """Where the run's validated events wait for the commit (a hidden folder of the store)."""
    size = sum(p.stat().st_size for p in event_paths)
    return EventSpill(
        store.facts_dir / f"{SPILL_PREFIX}{import_id}",
        store.keys,
        expected_rows=size // _MIN_BYTES_PER_EVENT,
    )


def _new_events(spill: EventSpill) -> pa.Table | EventSpill:
    """What the store adds: the spill itself once on disk, else the accepted events."""
    if spill.spilled:
        return spill
    table = spill.table()
    return table if table is not None else arrow_table(check_events(empty_events()))


def _stored_customers(store: FactStore, dtypes: dict[str, Any]) -> pd.DataFrame:
    """The stored customers at the configured dtypes (columns no longer declared kept)."""
    stored = store.load_customers()
    extra = [c for c in stored.columns if c not in dtypes]
    return stored.reindex(columns=[*dtypes, *extra]).astype(dtypes)


def _remove_unpublished(quarantine_dir: Path, facts_dir: Path, *, keep: Path) -> None:
    """Remove quarantine files and spilled events of a run killed before its commit
    point (never published; the store's lock is held, so no run is using them)."""
    if quarantine_dir.is_dir():
        for stray in quarantine_dir.glob("*.tmp-*"):
            stray.unlink(missing_ok=True)
    for folder in facts_dir.glob(f"{SPILL_PREFIX}*"):
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)


def _quarantine_file(
    quarantines: list[pd.DataFrame], now: pd.Timestamp, sources: list[Path], directory: Path
) -> tuple[Path | None, dict[Path, bytes]]:
    """The run's quarantine CSV (path and bytes), if any row was rejected."""
    quarantine = pd.concat(quarantines, ignore_index=True)
    if not len(quarantine):
        return None, {}
    # An erased customer's row is not kept, even in quarantine: only that it came.
    withheld = quarantine["reason"] == ReasonCode.ERASED.value
    quarantine.loc[withheld, "original_line"] = "(withheld: erased customer)"
    path = _quarantine_name(now, sources, directory)
    return path, {path: _csv_bytes(quarantine)}


def _repeated_sources(store: FactStore, files: list[FileCounts]) -> list[str]:
    """Sources whose exact bytes an earlier import read."""
    log = store.import_log()
    seen = set(log["sha256"]) if len(log) else set()
    return [f.source for f in files if f.sha256 in seen]


def _checked_customers(
    paths: list[Path],
    options: SourceOptions,
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    stored: pd.DataFrame,
    erased: Callable[[pd.Series], np.ndarray] | None,
) -> tuple[list[FileCounts], list[pd.DataFrame], pd.DataFrame]:
    """The customers files' counts, quarantines and new customers (none without files)."""
    if not paths:
        return [], [], stored.iloc[:0]
    targets = [*CUSTOMER_BASE_COLUMNS, *(a.name for a in config.attributes)]
    checked = validate_customers(
        _read_all(paths, options.read_options(targets)),
        config=config,
        now=now,
        stored=stored,
        mapping=options.mapping,
        date_format=options.date_format,
        erased=erased,
    )
    return list(checked.files), [checked.quarantine], checked.accepted


def _validate_event_files(
    paths: list[Path],
    options: SourceOptions,
    *,
    first_read: Ahead[RawTable] | None,
    config: FactsConfig,
    now: pd.Timestamp,
    known: list[pd.DataFrame],
    stored_events: StoredRows,
    derive: bool,
    erased: Callable[[pd.Series], np.ndarray] | None,
    spill: EventSpill,
) -> EventsTally:
    """Read and validate events files a block at a time; candidates go to ``spill``.

    ``first_read``: the blocks of ``paths[0]``, already being read (see :func:`_read_first`).
    """
    columns = ["customer_id", "signup_at"]
    blocks = EventBlocks(
        spill,
        config=config,
        now=now,
        customers=pd.concat([k[columns] for k in known], ignore_index=True),
        stored_events=stored_events,
        mapping=options.mapping,
        event_type=options.event_type,
        date_format=options.date_format,
        create=True if derive else config.unknown_customer == "create",
        dedupe=options.dedupe,
        erased=erased,
    )
    read_options = options.read_options(list(EVENT_COLUMNS))
    for i, path in enumerate(paths):
        read = first_read if i == 0 and first_read is not None else _read_ahead(path, read_options)
        # Three stages on three threads, a block apart: the next block but one is read
        # and split, the next is checked (fields, customers, row hashes), this one is
        # committed (duplicates of earlier rows, the spill). Each stage alone kept one
        # core at most busy; Arrow's parser and numpy release the GIL.
        with read:
            for block in ahead(_prepared(blocks, read), name="tagsmith-import-check"):
                blocks.commit(block)
    return blocks.result()


def _read_ahead(path: Path, options: ReadOptions) -> Ahead[RawTable]:
    """The blocks of one events file, read and split on their own thread from now on."""
    return Ahead(
        read_chunks(path, options, chunk_bytes=chunks.CHUNK_BYTES), name="tagsmith-import-read"
    )


@contextmanager
def _read_first(paths: list[Path], options: ReadOptions) -> Iterator[Ahead[RawTable] | None]:
    """The first events file's blocks, read ahead from now on; stopped on leaving.

    Started before the customers file is checked, which needs no events: scanning,
    reading and splitting the first events file meanwhile on its own thread kept one of
    two cores busy that sat idle for the first 1.5 s of a 20M-event import.
    """
    if not paths:
        yield None
        return
    with _read_ahead(paths[0], options) as read:
        yield read


def _prepared(blocks: EventBlocks, raws: Iterator[RawTable]) -> Iterator[PreparedBlock]:
    """Each block of ``raws`` (read ahead on their own thread) prepared."""
    for raw in raws:
        yield blocks.prepare(raw)


def _log_entries(
    files: list[FileCounts],
    *,
    import_id: str,
    now: pd.Timestamp,
    quarantine: Path | None,
    derived: int,
) -> list[dict[str, Any]]:
    """One import log entry per file read."""
    return [
        {
            "import_id": import_id,
            "imported_at": now.isoformat(),
            "kind": f.kind,
            "source": str(Path(f.source).resolve()),
            "sha256": f.sha256,
            "dialect": f.dialect,
            "rows_read": f.rows_read,
            "accepted": f.accepted,
            "quarantined": f.total_quarantined,
            "quarantined_by_reason": f.quarantined,
            "quarantine_file": str(quarantine) if quarantine else None,
            "derived_customers": derived if f.kind == "events" else 0,
        }
        for f in files
    ]


def _with_made(
    new_customers: pd.DataFrame, made: pd.DataFrame, dtypes: dict[str, Any]
) -> pd.DataFrame:
    """``new_customers`` plus the customers made from events (their other facts missing)."""
    made_full = made.reindex(columns=list(dtypes)).astype(dtypes)
    made_full["signup_at"] = made["signup_at"].astype(TIMESTAMP_DTYPE).to_numpy()
    return pd.concat([new_customers, made_full], ignore_index=True)
