"""Row-hash indexes beside the events files: an append asks them instead of hashing the
stored keys, finds the same duplicates, and a store never trusts a stale one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import features.chunks as chunks_module
import features.hash_index as hash_index_module
import features.spill as spill_module
import features.store as store_module
import features.store_files as store_files_module
from features import FactsConfig
from features.crypto import EncryptionKeys, generate_key
from features.hash_index import (
    RowHashIndex,
    SeenFilter,
    index_path,
    read_index,
    schema_signature,
    sorted_distinct,
    table_index,
    write_index,
)
from features.importer import ImportReport, import_facts
from features.schema import EVENT_ARROW_SCHEMA, EVENT_COLUMNS, arrow_table, check_events
from features.spill import row_hashes
from features.store import FactStore
from features.store_files import StoredKeys
from features.validation import empty_events
from tests.features.facts_helpers import NOW, write

HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"
STAMP = pd.Timestamp("2021-01-01")


def _rows(n: int, first: int) -> list[str]:
    """``n`` distinct purchases (one minute apart from minute ``first``, own order ids)."""
    rng = np.random.default_rng(first)
    return [
        f"c{rng.integers(0, 500):04d},{(STAMP + pd.Timedelta(minutes=first + i)).isoformat()},"
        f"purchase,{rng.integers(1, 99)}.5,,,o{first + i},1"
        for i in range(n)
    ]


def _import(
    root: Path, rows: list[str], *, keys: EncryptionKeys | None = None, **store_args: int
) -> tuple[ImportReport, FactStore]:
    path = write(root / f"in-{uuid.uuid4().hex[:8]}.csv", HEADER + "\n".join(rows) + "\n")
    store = FactStore(root / "facts", keys=keys, **store_args)
    report = import_facts(
        store,
        config=FactsConfig(),
        quarantine_dir=root / "quarantine",
        now=NOW,
        events=path,
        derive_customers=True,
    )
    return report, store


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups of 16 rows: a file of 2,000 events has 125 (a customer's rows span few)."""
    monkeypatch.setattr(store_module, "ROW_GROUP_ROWS", 16)


@pytest.fixture
def hashed_files(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The stored files whose keys an import hashes (all of them, without indexes)."""
    hashed: list[Path] = []
    real = StoredKeys._add_file

    def spy(self: StoredKeys, con: duckdb.DuckDBPyConnection, number: int, path: Path) -> None:
        hashed.append(path)
        real(self, con, number, path)

    monkeypatch.setattr(StoredKeys, "_add_file", spy)
    return hashed


def _block_schema() -> pa.Schema:
    """The schema an import block hashes its candidate rows in."""
    return arrow_table(check_events(empty_events())).schema


def _assert_indexes_hold_every_stored_row(store: FactStore) -> None:
    schema = _block_schema()
    for path in store.event_paths():
        index = read_index(index_path(path), pq.read_metadata(path).num_rows)
        assert index is not None, path
        assert index.schema == schema_signature(schema)
        stored = pq.read_table(path).select(list(EVENT_COLUMNS)).cast(schema)
        hashes = np.unique(row_hashes(stored, list(EVENT_COLUMNS)))
        assert index.found(hashes).all(), path


def test_an_append_of_new_rows_reads_no_stored_key(
    tmp_path: Path, small_groups: None, hashed_files: list[Path]
) -> None:
    _import(tmp_path, _rows(2000, 0), segment_min_rows=1)
    _, store = _import(tmp_path, _rows(1000, 10_000), segment_min_rows=1)
    assert len(store.event_paths()) == 2
    assert all(index_path(p).is_file() for p in store.event_paths())
    hashed_files.clear()
    report, store = _import(tmp_path, _rows(300, 20_000), segment_min_rows=1)
    assert hashed_files == []  # before the index: both files' keys hashed
    assert report.events_added == 300
    assert report.quarantine_path is None
    assert len(store.load_events()) == 3300
    _assert_indexes_hold_every_stored_row(store)


def test_duplicates_found_through_the_index_are_those_found_without_it(
    tmp_path: Path, small_groups: None, hashed_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, segment = _rows(2000, 0), _rows(1000, 10_000)
    again = _rows(300, 20_000) + base[100:105] + segment[500:505] + base[7:8]
    outcomes = {}
    groups_read: list[int] = []
    real_read = pq.ParquetFile.read_row_groups

    def read_groups(self: pq.ParquetFile, groups: list[int], **kwargs: object) -> object:
        groups_read.append(len(groups))
        return real_read(self, groups, **kwargs)

    for mode in ("indexed", "plain"):
        root = tmp_path / mode
        _import(root, base, segment_min_rows=1)
        _, store = _import(root, segment, segment_min_rows=1)
        stored_files = store.event_paths()
        if mode == "plain":
            for stale in (root / "facts").glob("*.rowhashes"):
                stale.unlink()
        hashed_files.clear()
        groups_read.clear()
        with monkeypatch.context() as spy:
            spy.setattr(pq.ParquetFile, "read_row_groups", read_groups)
            report, store = _import(root, again, segment_min_rows=1)
        if mode == "indexed":
            assert hashed_files == []
            # Only the groups of the 11 repeated rows' customers, of 125 + 63.
            assert 0 < sum(groups_read) <= 2 * 11
        else:
            assert hashed_files == stored_files
        assert report.quarantine_path is not None
        quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
        assert (quarantine["message"] == "exact duplicate of an event already stored").sum() == 11
        events = store.load_events().astype(str)
        outcomes[mode] = (
            events.sort_values(list(events.columns), ignore_index=True).to_dict("list"),
            quarantine.drop(columns=["source_file"]).to_dict("list"),
            report.events_added,
        )
    assert outcomes["indexed"] == outcomes["plain"]


@pytest.mark.parametrize("few_rows", [100_000, 10])
def test_a_reimport_of_a_whole_file_falls_back_to_the_hashed_keys(
    tmp_path: Path,
    small_groups: None,
    hashed_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    few_rows: int,
) -> None:
    monkeypatch.setattr(store_files_module, "_FEW_ROWS", few_rows)
    listed: list[int] = []
    real = StoredKeys._of_customers

    def listing(self: StoredKeys, wanted: pa.Table) -> pa.Table | None:
        listed.append(len(wanted))
        return real(self, wanted)

    monkeypatch.setattr(StoredKeys, "_of_customers", listing)
    base = _rows(2000, 0)
    _import(tmp_path, base, segment_min_rows=1)
    _, store = _import(tmp_path, _rows(1000, 10_000), segment_min_rows=1)
    stored_files = store.event_paths()
    hashed_files.clear()
    report, store = _import(tmp_path, base, segment_min_rows=1)
    # Every row found in the index: too many row groups to read them one by one.
    assert hashed_files == stored_files
    assert report.events_added == 0
    assert report.files[-1].quarantined == {"duplicate": 2000}
    # Past the cap the customers of the found rows are not even listed.
    assert listed == ([] if few_rows == 10 else [2000])


@pytest.mark.parametrize("streamed", [False, True])
def test_indexes_hold_every_stored_row_through_appends_and_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    if streamed:  # tiny blocks, spilled by customer range
        monkeypatch.setattr(chunks_module, "CHUNK_BYTES", 2000)
        monkeypatch.setattr(spill_module, "SPILL_FROM_ROWS", 100)
        monkeypatch.setattr(spill_module, "PART_ROWS", 150)
    # Large enough for the filter and a run per block.
    monkeypatch.setattr(hash_index_module, "SINGLE_RUN_MAX", 200)
    args = {"segment_min_rows": 1, "max_segments": 2}
    _import(tmp_path, _rows(600, 0), keys=None, **args)
    _import(tmp_path, _rows(100, 10_000), keys=None, **args)
    _, store = _import(tmp_path, _rows(300, 20_000), keys=None, **args)
    assert len(store.segment_paths()) == 2
    _assert_indexes_hold_every_stored_row(store)
    report, store = _import(tmp_path, _rows(50, 30_000) + _rows(600, 0)[:3], keys=None, **args)
    assert store.segment_paths() == []  # compacted: one file, one index
    assert sorted(p.name for p in (tmp_path / "facts").glob("*.rowhashes")) == [
        "events.parquet.rowhashes"
    ]
    assert report.events_added == 50
    index = read_index(index_path(store.events_path), 1050)
    assert index is not None
    assert (index.words is not None) == (sum(len(r) for r in index.runs) > 200)
    _assert_indexes_hold_every_stored_row(store)


def test_a_stale_index_is_not_trusted_and_a_rewrite_without_hashes_makes_one(
    tmp_path: Path, hashed_files: list[Path]
) -> None:
    base = _rows(400, 0)
    _, store = _import(tmp_path, base, segment_min_rows=1)
    index = index_path(store.events_path)
    assert read_index(index, 400) is not None
    assert read_index(index, 399) is None  # another file's rows
    header, _, rest = index.read_bytes().partition(b"\n")
    other = json.loads(header) | {"duckdb": "0.0.1"}
    index.write_bytes(json.dumps(other).encode().ljust(len(header)) + b"\n" + rest)
    assert read_index(index, 400) is None  # hashed by another DuckDB
    hashed_files.clear()
    report, store = _import(tmp_path, base[:5] + _rows(10, 5000), segment_min_rows=1)
    assert hashed_files == [store.events_path]  # not trusted: the keys are hashed
    assert report.events_added == 10
    customer = base[0].split(",")[0]
    store.erase([customer], now=NOW)
    # The erasure's rewrite had no trusted index to carry over: it hashed its rows.
    assert len(store.event_paths()) == 1
    _assert_indexes_hold_every_stored_row(store)


def test_an_erasure_keeps_the_stored_indexes(tmp_path: Path, hashed_files: list[Path]) -> None:
    _import(tmp_path, _rows(400, 0), segment_min_rows=1)
    _, store = _import(tmp_path, _rows(100, 5000), segment_min_rows=1)
    before = [read_index(index_path(p), pq.read_metadata(p).num_rows) for p in store.event_paths()]
    assert len(before) == 2
    store.erase([_rows(400, 0)[0].split(",")[0]], now=NOW)
    (path,) = store.event_paths()
    after = read_index(index_path(path), pq.read_metadata(path).num_rows)
    assert after is not None
    # The two files' runs merged (a superset of the rows left), not the rows rehashed.
    assert np.array_equal(after.runs[0], np.union1d(*[i.runs[0] for i in before if i is not None]))
    hashed_files.clear()
    report, store = _import(tmp_path, _rows(20, 9000), segment_min_rows=1)
    assert hashed_files == []
    assert report.events_added == 20


def test_table_index_is_the_import_s_index(tmp_path: Path) -> None:
    # Oracle: the index an import writes (its rows hashed as it validated them).
    assert schema_signature(EVENT_ARROW_SCHEMA) == schema_signature(_block_schema())
    _, store = _import(tmp_path, _rows(600, 0), segment_min_rows=1)
    written = read_index(index_path(store.events_path), 600)
    assert written is not None
    made = table_index(pq.read_table(store.events_path), EVENT_ARROW_SCHEMA, EVENT_COLUMNS)
    assert made.schema == written.schema
    assert [r.tolist() for r in made.runs] == [r.tolist() for r in written.runs]


def test_a_store_written_whole_keeps_an_index_that_appends_use(
    tmp_path: Path, small_groups: None, hashed_files: list[Path]
) -> None:
    _, imported = _import(tmp_path / "a", _rows(500, 0), segment_min_rows=1)
    store = FactStore(tmp_path / "b" / "facts", segment_min_rows=1)
    with store.lock():  # as a generated or rebuilt project is written
        store.write(
            customers=imported.load_customers(),
            events=imported.load_events(),
            log_entries=[],
            now=NOW,
        )
    _assert_indexes_hold_every_stored_row(store)
    hashed_files.clear()
    # Three rows already stored: the index finds them, and only their customers' row
    # groups are read to compare values.
    again = _rows(500, 0)[:3]
    report, store = _import(tmp_path / "b", _rows(50, 8000) + again, segment_min_rows=1)
    assert hashed_files == []  # the index answered: no stored key hashed
    assert report.events_added == 50
    assert len(store.load_events()) == 550


def test_an_encrypted_store_keeps_no_row_hashes(tmp_path: Path) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test key")
    _import(tmp_path, _rows(300, 0), keys=keys, segment_min_rows=1)
    report, _ = _import(
        tmp_path, _rows(30, 5000) + _rows(300, 0)[:4], keys=keys, segment_min_rows=1
    )
    assert report.events_added == 30
    assert not list((tmp_path / "facts").rglob("*.rowhashes"))


@pytest.mark.parametrize("filtered", [False, True])
def test_an_index_finds_exactly_its_hashes_after_a_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filtered: bool
) -> None:
    if filtered:
        monkeypatch.setattr(hash_index_module, "SINGLE_RUN_MAX", 1000)
    rng = np.random.default_rng(5)
    runs = [
        np.sort(rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)) for n in (900, 0, 700)
    ]
    index = RowHashIndex.of(runs, "a:int64")
    assert (index.words is not None) == filtered
    assert len(index.runs) == (2 if filtered else 1)
    path = tmp_path / "x.rowhashes"
    write_index(index, path, rows=1600)
    back = read_index(path, rows=1600)
    assert back is not None
    assert back.schema == "a:int64"
    stored = np.concatenate(runs)
    asked = np.unique(np.concatenate([stored[::3], rng.integers(0, 2**63, 5000).astype(np.uint64)]))
    for got in (index, back):
        assert np.array_equal(got.found(asked), np.isin(asked, stored))
    path.write_bytes(path.read_bytes()[:-8])  # cut short
    assert read_index(path, rows=1600) is None
    assert read_index(tmp_path / "nothing" / "x.rowhashes", rows=1) is None


def test_sorted_distinct_is_numpy_unique() -> None:
    rng = np.random.default_rng(2)
    for values in (
        np.zeros(0, dtype=np.uint64),
        np.array([7], dtype=np.uint64),
        rng.integers(0, 40, 500).astype(np.uint64),
        rng.integers(0, 2**63, 500).astype(np.uint64),
    ):
        assert np.array_equal(sorted_distinct(values), np.unique(values))


@pytest.mark.parametrize("top_bits", [64, 24])  # 24: many hashes share a filter word
def test_the_seen_filter_holds_the_same_bits_for_sorted_and_unsorted_hashes(
    top_bits: int,
) -> None:
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**64, 50_000, dtype=np.uint64) >> np.uint64(64 - top_bits)
    hashes <<= np.uint64(64 - top_bits)
    in_order, shuffled = SeenFilter(), SeenFilter()
    in_order.add(np.sort(hashes))  # the run-merging path
    shuffled.add(hashes)  # the rounds of fancy-indexed writes
    assert np.array_equal(in_order.words, shuffled.words)
    assert in_order.maybe(hashes).all()
    others = rng.integers(0, 2**64, 50_000, dtype=np.uint64)
    assert in_order.maybe(others).mean() < 0.05  # a filter, not "always maybe"
