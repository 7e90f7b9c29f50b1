"""The fact store: validated customers and events as Parquet files, with an import log.

Layout of ``facts_dir``::

    customers.parquet   canonical customers, sorted by customer_id
    events.parquet      canonical events, sorted by customer_id, occurred_at
    events-seg-*.parquet  events appended by later imports, one per import, sorted alike
    *.parquet.rowhashes  the row hashes of an events file (features.hash_index)
    imports.jsonl       import log: one JSON object per imported file
    manifest.json       counts, date range and fingerprint of the stored content
    .lock               held while an import runs (filelock)

Writes are atomic as a whole: every new file is written next to its target, then a
journal listing the renames is written (atomically), then the renames run and the
journal is removed. A run killed before the journal exists leaves only stray temp
files (removed later); a run killed after it is rolled forward by the next reader or
writer. So readers see either the old or the new content of every file, together.

Appending: once the store holds :data:`SEGMENT_MIN_ROWS` events, an import's new events
are one new segment instead of a rewritten ``events.parquet`` (a daily append to a year
of history costs what the day costs). Every reader goes through
:meth:`FactStore.event_paths` (base file first, then segments oldest first). When
:data:`MAX_SEGMENTS` segments have piled up, the next import compacts them into
``events.parquet`` in the same commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout

from features.crypto import EncryptionKeys, read_parquet
from features.errors import StoreError
from features.hash_index import IndexCommit, RowHashIndex, indexes_of, merged, table_index
from features.io import file_sha256
from features.schema import (
    EVENT_ARROW_SCHEMA,
    EVENT_COLUMNS,
    EVENT_DTYPES,
    arrow_table,
    check_customers,
    check_events,
)
from features.spill import EventSpill, spill_writer
from features.store_files import (
    EVENT_ENCODING,
    IMPORT_LOG_COLUMNS,
    FileSource,
    canonical_events,
    manifest_counts,
    matching_events,
    merge_counts,
    read_filtered,
    read_store_parquet,
    sorted_events,
    unreadable,
    write_store_file,
)

__all__ = ["FactStore"]

# Rows per Parquet row group. Files are sorted by customer, so reading one customer
# (profiles, explanations) decodes only the row group whose id range holds it: at 21.6M
# events, 25-35 ms with 64Ki-row groups against 150-300 ms with pyarrow's default of 1Mi
# rows (and the customers file was one group: a whole-file read per customer).
ROW_GROUP_ROWS = 65_536

# Below this many stored events, rewriting the one events file costs under a second
# and keeps the store a single sorted file; at or above it, imports append segments.
SEGMENT_MIN_ROWS = 1_000_000
# Segments kept before an import compacts them into events.parquet: each is a file
# every full read opens, and per-customer reads probe every one.
MAX_SEGMENTS = 8
_SEGMENT_PREFIX = "events-seg-"

_JOURNAL = "journal.json"
_TMP_MARK = ".tmp-"


class FactStore:
    """Validated facts of one project, on disk under ``facts_dir``.

    Args:
        facts_dir: The store's folder (created on first write).
        lock_timeout: Seconds to wait for another import to finish before giving up.
    """

    def __init__(
        self,
        facts_dir: Path,
        *,
        lock_timeout: float = 600.0,
        keys: EncryptionKeys | None = None,
        segment_min_rows: int = SEGMENT_MIN_ROWS,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self.facts_dir = Path(facts_dir)
        self.lock_timeout = lock_timeout
        self.segment_min_rows = segment_min_rows
        self.max_segments = max_segments
        # With keys, every Parquet file is written sealed (features.crypto).
        self.keys = keys
        self._holding = False

    # Paths --------------------------------------------------------------------------
    @property
    def customers_path(self) -> Path:
        """Parquet file of canonical customers (absent until the first import)."""
        return self.facts_dir / "customers.parquet"

    @property
    def events_path(self) -> Path:
        """Parquet file of canonical events, sorted by customer and time."""
        return self.facts_dir / "events.parquet"

    def segment_paths(self) -> list[Path]:
        """Event segments appended after ``events.parquet`` was written, oldest first."""
        if not self.facts_dir.is_dir():
            return []
        return sorted(self.facts_dir.glob(f"{_SEGMENT_PREFIX}*.parquet"))

    def event_paths(self) -> list[Path]:
        """Every Parquet file holding stored events: ``events.parquet``, then segments."""
        self._recover_if_needed()
        base = [self.events_path] if self.events_path.is_file() else []
        return base + self.segment_paths()

    @property
    def import_log_path(self) -> Path:
        """JSON-lines import log, one object per imported file."""
        return self.facts_dir / "imports.jsonl"

    @property
    def manifest_path(self) -> Path:
        """Summary of the stored content (counts, range, fingerprint)."""
        return self.facts_dir / "manifest.json"

    @property
    def lock_path(self) -> Path:
        """Lock file serialising imports."""
        return self.facts_dir / ".lock"

    # Reading ------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether anything has been imported yet."""
        self._recover_if_needed()
        return self.manifest_path.is_file()

    def load_customers(self) -> pd.DataFrame:
        """All stored customers (canonical; empty with base columns before any import)."""
        self._recover_if_needed()
        if not self.customers_path.is_file():
            return pd.DataFrame(
                {
                    "customer_id": pd.Series([], dtype="string"),
                    "signup_at": pd.Series([], dtype=EVENT_DTYPES["occurred_at"]),
                }
            )
        return check_customers(read_store_parquet(self.customers_path, keys=self.keys))

    def load_events(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Stored events, optionally only some columns (canonical dtypes).

        Raises:
            StoreError: A requested column is not an event column.
        """
        self._recover_if_needed()
        if columns is not None:
            unknown = [c for c in columns if c not in EVENT_COLUMNS]
            if unknown:
                raise StoreError(
                    f"Expected event columns among {list(EVENT_COLUMNS)}. Got {unknown}."
                )
        wanted = list(columns) if columns is not None else list(EVENT_COLUMNS)
        paths = self.event_paths()
        if not paths:
            return pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in wanted})
        frames = [read_store_parquet(path, wanted, keys=self.keys) for path in paths]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if columns is None:
            return check_events(frame)
        return frame

    def load_customer(self, customer_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One customer's row and events (canonical dtypes), read with Parquet filters.

        Both frames are empty when the customer is not stored. Reading one customer
        this way skips the row groups of everyone else (no full load).
        """
        self._recover_if_needed()
        if self.customers_path.is_file():
            customers = check_customers(read_filtered(self.customers_path, customer_id, self.keys))
        else:
            customers = self.load_customers()  # empty, base columns
        events = pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})
        paths = self.event_paths()
        if paths and len(customers):
            parts = [read_filtered(path, customer_id, self.keys) for path in paths]
            events = check_events(parts[0] if len(parts) == 1 else pd.concat(parts))
        return customers.reset_index(drop=True), events.reset_index(drop=True)

    def events_table(self) -> pa.Table | None:
        """Stored events as an Arrow table (no pandas conversion); ``None`` when empty."""
        paths = self.event_paths()
        if not paths:
            return None
        tables = []
        for path in paths:
            try:
                tables.append(read_parquet(path, self.keys))
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(path, exc) from exc
        schema = tables[0].schema
        return tables[0] if len(tables) == 1 else pa.concat_tables([t.cast(schema) for t in tables])

    def events_matching(self, keys: pa.Table) -> pa.Table | None:
        """Stored events whose ``(customer_id, occurred_at)`` pair is among ``keys``
        (only those can be exact duplicates of new rows; see
        :func:`features.store_files.matching_events`). ``None`` when nothing is stored.

        Raises:
            StoreError: A file of the store cannot be read.
        """
        paths = self.event_paths()
        if not paths:
            return None
        return matching_events(paths, self.keys, keys)

    def manifest(self) -> dict[str, Any]:
        """Counts, date range, event types and fingerprint of the stored content."""
        self._recover_if_needed()
        if not self.manifest_path.is_file():
            return {}
        result: dict[str, Any] = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return result

    def fingerprint(self) -> str:
        """sha256 of the stored customers and events files (for lineage).

        Raises:
            StoreError: Nothing has been imported yet.
        """
        manifest = self.manifest()
        if not manifest:
            raise StoreError(self._empty_message())
        return str(manifest["fingerprint"])

    def last_event_at(self) -> pd.Timestamp:
        """Time of the latest stored event (UTC).

        Raises:
            StoreError: No event has been imported yet.
        """
        manifest = self.manifest()
        if not manifest or manifest.get("last_event_at") is None:
            raise StoreError(self._empty_message())
        return pd.Timestamp(manifest["last_event_at"])

    def import_log(self) -> pd.DataFrame:
        """One row per imported file: import id, time, kind, source, sha256, counts."""
        self._recover_if_needed()
        columns = list(IMPORT_LOG_COLUMNS)
        if not self.import_log_path.is_file():
            return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})
        lines = self.import_log_path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        frame = pd.DataFrame.from_records(records, columns=columns)
        frame["imported_at"] = pd.to_datetime(frame["imported_at"], utc=True)
        return frame

    def _empty_message(self) -> str:
        return (
            f"Expected imported facts in {self.facts_dir}. Got none yet: run "
            "'tagsmith facts import --events FILE' first."
        )

    # Writing ------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the import lock (and finish any interrupted commit first).

        Raises:
            StoreError: Another import held the lock for longer than ``lock_timeout``.
        """
        self.facts_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"Expected to lock the fact store {self.facts_dir} within "
                f"{self.lock_timeout:.0f} s. Got it held by another import all that time."
            ) from exc
        try:
            self._holding = True
            self._recover()
            yield
        finally:
            self._holding = False
            lock.release()

    def write(
        self,
        *,
        customers: pd.DataFrame,
        events: pd.DataFrame | pa.Table,
        log_entries: list[dict[str, Any]],
        extra_files: dict[Path, bytes] | None = None,
        now: pd.Timestamp,
        hashes: RowHashIndex | None = None,
    ) -> None:
        """Replace the stored content with ``customers`` and ``events`` atomically.

        Call inside :meth:`lock`. ``events`` is the whole new content: a canonical
        DataFrame (checked here) or an Arrow table of canonical columns (already
        checked by the caller, e.g. stored events plus validated new ones). Segments
        are folded in: afterwards ``events.parquet`` holds every event. ``log_entries``
        go to the import log, ``extra_files`` (e.g. the quarantine file) in the same
        commit; without ``hashes`` (not an import) the events' index is made here.
        """
        events_table = sorted_events(events)
        if hashes is None and self.keys is None and events_table.num_rows:
            hashes = table_index(events_table, EVENT_ARROW_SCHEMA, EVENT_COLUMNS)
        self._commit(
            customers=customers,
            events=events_table,
            segment=None,
            log_entries=log_entries,
            extra_files=extra_files,
            manifest=manifest_counts(events_table),
            now=now,
            hashes=hashes,
        )

    def add(
        self,
        *,
        customers: pd.DataFrame,
        new_events: pd.DataFrame | pa.Table | EventSpill,
        log_entries: list[dict[str, Any]],
        extra_files: dict[Path, bytes] | None = None,
        now: pd.Timestamp,
        hashes: RowHashIndex | None = None,
    ) -> None:
        """Store ``customers`` (the whole new content) and add ``new_events`` atomically.

        Call inside :meth:`lock`. While the store is small the events file is
        rewritten whole; from :attr:`segment_min_rows` stored events on, the new events
        become one new segment and the manifest is updated from its counts (no stored
        event is read), until :attr:`max_segments` segments call for a compaction.
        ``new_events`` may be an import's spill (:mod:`features.spill`): the same, with
        the new (and, when rewriting, the stored) events sorted one customer range at a
        time. ``hashes``: the new events' row hashes, kept beside the file written
        (merged with the stored files' when rewriting; see :mod:`features.hash_index`).
        """
        stored = self.manifest().get("events", 0) if self.events_path.is_file() else 0
        segments = self.segment_paths()
        rewrite = stored < self.segment_min_rows or len(segments) >= self.max_segments
        if rewrite and stored and hashes is not None:
            hashes = merged([*indexes_of(self.event_paths()), hashes])
        if isinstance(new_events, EventSpill):
            self._add_spilled(customers, new_events, log_entries, extra_files, now, rewrite, hashes)
            return
        if rewrite:
            old = self.events_table()
            # Stored events first, then the new ones in file order: one stable sort in
            # write() orders them as sorting the new ones first would (a first import:
            # the new ones, sorted once there).
            everything = (
                new_events
                if old is None
                else pa.concat_tables([old, canonical_events(new_events).cast(old.schema)])
            )
            self.write(
                customers=customers,
                events=everything,
                log_entries=log_entries,
                extra_files=extra_files,
                now=now,
                hashes=hashes,
            )
            return
        new_table = sorted_events(new_events)
        counts = manifest_counts(new_table, previous=self.manifest())
        self._commit(
            customers=customers,
            events=None,
            segment=new_table if new_table.num_rows else None,
            log_entries=log_entries,
            extra_files=extra_files,
            manifest=counts,
            now=now,
            hashes=hashes,
        )

    def _add_spilled(
        self,
        customers: pd.DataFrame,
        spill: EventSpill,
        log_entries: list[dict[str, Any]],
        extra_files: dict[Path, bytes] | None,
        now: pd.Timestamp,
        rewrite: bool,
        hashes: RowHashIndex | None,
    ) -> None:
        """Commit an import's spilled events: merged with the stored ones into a new
        events file (``rewrite``), or as one new segment; sorted one customer range at
        a time either way, so memory stays bounded. Nothing new (a re-import): no
        events file is written and the fingerprint stays."""
        previous = self.manifest()
        counts = merge_counts(spill.counts, previous if previous.get("events") else None)
        writer = spill_writer(spill, ROW_GROUP_ROWS) if spill.accepted else None
        if writer is not None and rewrite:
            spill.put_first(self.event_paths(), self.keys)
        self._commit(
            customers=customers,
            events=writer if rewrite else None,
            segment=None if rewrite else writer,
            log_entries=log_entries,
            extra_files=extra_files,
            manifest=counts,
            now=now,
            hashes=hashes,
        )

    def _commit(
        self,
        *,
        customers: pd.DataFrame,
        events: pa.Table | Callable[[Path], object] | None,
        segment: pa.Table | Callable[[Path], object] | None,
        log_entries: list[dict[str, Any]],
        extra_files: dict[Path, bytes] | None,
        manifest: dict[str, Any],
        now: pd.Timestamp,
        hashes: RowHashIndex | None = None,
    ) -> None:
        """Write every file under a temp name, then commit them through the journal.

        ``events`` replaces the events file and removes every segment; ``segment`` is
        added as a new segment; ``hashes`` is kept beside the file written. The
        fingerprint hashes the files written, and for an appended segment the previous
        fingerprint too (the content it extends).
        """
        customers = check_customers(customers).sort_values(
            "customer_id", kind="stable", ignore_index=True
        )
        token = uuid.uuid4().hex[:12]
        renames: list[tuple[Path | None, Path]] = []

        def temp_for(final: Path) -> Path:
            tmp = final.with_name(f"{final.name}{_TMP_MARK}{token}")
            renames.append((tmp, final))
            return tmp

        journal = self.facts_dir / _JOURNAL
        journal_tmp = journal.with_name(f"{_JOURNAL}{_TMP_MARK}{token}")
        try:
            self.facts_dir.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            previous = str(self.manifest().get("fingerprint", ""))
            if events is None:
                digest.update(previous.encode())
            unchanged = events is None and segment is None
            event_files: list[tuple[FileSource, Path]] = []
            if events is not None:
                event_files.append((events, self.events_path))
            if segment is not None:
                name = f"{_SEGMENT_PREFIX}{now.value:020d}-{token}.parquet"
                event_files.append((segment, self.facts_dir / name))
            customers_tmp = temp_for(self.customers_path)
            # The customers file is converted, written and hashed on a worker thread
            # while the events are written here (an import's sorted write: 0.3 s of a
            # 20M-event import that had one core idle). Both are joined before anything
            # is published; the fingerprint hashes the files in the same order as ever.
            written = [(temp_for(final), final) for _, final in event_files]
            gone = self.segment_paths() if events is not None else []
            with (
                ThreadPoolExecutor(1, thread_name_prefix="tagsmith-customers") as pool,
                # An encrypted store keeps no hashes (a few columns' values are guessable).
                IndexCommit(None if self.keys else hashes, written, gone, temp_for) as indexed,
            ):
                customers_sha = pool.submit(
                    lambda: self._write(arrow_table(customers), customers_tmp, {})
                )
                event_shas = [
                    self._write(table, tmp, EVENT_ENCODING)
                    for (table, _), (tmp, _) in zip(event_files, written, strict=True)
                ]
                customers_digest = customers_sha.result()
            renames += indexed.finish()
            if unchanged and self.customers_path.is_file():
                # Nothing added (a re-import): the fingerprint stays what it was.
                unchanged = customers_digest == file_sha256(self.customers_path)
            for sha in [customers_digest, *event_shas]:
                digest.update(sha.encode())
            if events is not None:
                renames.extend((None, old) for old in self.segment_paths())

            old_log = self.import_log_path.read_bytes() if self.import_log_path.is_file() else b""
            new_log = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in log_entries)
            temp_for(self.import_log_path).write_bytes(old_log + new_log.encode("utf-8"))

            content = {
                "format": 1,
                "fingerprint": previous if unchanged else digest.hexdigest(),
                "customers": len(customers),
                **manifest,
                "updated_at": now.isoformat(),
            }
            temp_for(self.manifest_path).write_text(json.dumps(content, indent=2), "utf-8")
            for final, data in (extra_files or {}).items():
                final.parent.mkdir(parents=True, exist_ok=True)
                # Quarantine files hold rejected rows as they came: sealed like the rest.
                temp_for(final).write_bytes(self.keys.seal(data) if self.keys else data)

            journal_tmp.write_text(
                json.dumps([[None if t is None else str(t), str(f)] for t, f in renames]),
                encoding="utf-8",
            )
            _fsync(journal_tmp)
        except BaseException:
            for stray in [t for t, _ in renames if t is not None] + [journal_tmp]:
                stray.unlink(missing_ok=True)
            raise
        os.replace(journal_tmp, journal)  # the commit point
        self._roll_forward(journal)

    def _write(self, table: FileSource, tmp: Path, encoding: dict[str, Any]) -> str:
        """:func:`~features.store_files.write_store_file` with this store's keys."""
        return write_store_file(table, tmp, self.keys, ROW_GROUP_ROWS, encoding)

    def erase(self, customer_ids: Collection[str], *, now: pd.Timestamp) -> tuple[int, int]:
        """Remove the customers and all their events, in one atomic commit.

        Returns:
            (customers removed, events removed).
        """
        wanted = pa.array(sorted({str(c) for c in customer_ids}), pa.string())
        with self.lock():
            if not self.manifest_path.is_file():
                return 0, 0
            customers = self.load_customers()
            events = self.events_table()
            gone = customers["customer_id"].isin(wanted.to_pylist()).to_numpy(bool)
            if events is None:
                return int(gone.sum()), 0
            hit = pc.is_in(events["customer_id"], value_set=wanted)
            n_events = int(pc.sum(hit).as_py() or 0)
            if not gone.any() and not n_events:
                return 0, 0
            # The stored indexes hold every remaining row (a superset serves): no rehash.
            self.write(
                customers=customers[~gone],
                events=events.filter(pc.invert(hit)),
                log_entries=[],
                now=now,
                hashes=None if self.keys else merged(indexes_of(self.event_paths())),
            )
        return int(gone.sum()), n_events

    # Recovery -----------------------------------------------------------------------
    def _recover_if_needed(self) -> None:
        if not self._holding and (self.facts_dir / _JOURNAL).is_file():
            with self.lock():
                pass

    def _recover(self) -> None:
        """Finish a committed write; drop temp files of writes that never committed."""
        journal = self.facts_dir / _JOURNAL
        if journal.is_file():
            self._roll_forward(journal)
        for stray in self.facts_dir.glob(f"*{_TMP_MARK}*"):
            stray.unlink(missing_ok=True)

    def _roll_forward(self, journal: Path) -> None:
        renames = json.loads(journal.read_text(encoding="utf-8"))
        for tmp, final in renames:
            if tmp is None:  # a segment folded into the rewritten events file
                Path(final).unlink(missing_ok=True)
            elif Path(tmp).exists():
                os.replace(tmp, final)
        journal.unlink()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
