"""Streaming import: a file read in blocks and events spilled by customer range give
exactly what a whole-file read and an in-memory sort give (rows, line numbers,
quarantine, stored order, counts), and idempotence, atomicity, encryption hold."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import features.chunks as chunks_module
import features.spill as spill_module
from features import FactsConfig
from features.chunks import read_chunks
from features.crypto import EncryptionKeys, generate_key, is_sealed, open_bytes
from features.errors import FactFileError
from features.event_blocks import EventBlocks, PreparedBlock
from features.importer import ImportReport, SourceOptions, import_facts
from features.io import RawTable, ReadOptions, read_table
from features.store import FactStore
from features.store_files import StoredKeys
from tests.features.facts_helpers import DATA, NOW, write

HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"


def _rows(raws: list[RawTable]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Data (with line numbers and texts) and malformed rows of all blocks together."""
    data = pd.concat(
        [
            r.data.assign(_line=r.line_number, _text=r.text.to_numpy()).reset_index(drop=True)
            for r in raws
        ],
        ignore_index=True,
    )
    malformed = pd.concat([r.malformed for r in raws], ignore_index=True)
    return data.astype(str), malformed.astype(str).reset_index(drop=True)


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["browse", "purchase", "login"])
        amount = f"{rng.integers(1, 99)}.5" if kind == "purchase" else ""
        out.append(f"c{rng.integers(1, 4)},2021-0{1 + i % 4}-{1 + i % 28:02d},{kind},{amount},,,,")
    return out


TRICKY = [
    'c1,2021-01-03,purchase,25.5,"books,\nrare",p1,o1,1',  # quoted line break
    'c1,"2021-01-02,browse,,,,,',  # stray quote
    "c2,2021-01-07,browse,,toys,,,,extra",  # too many fields
    "",  # blank line
    'c2,2021-01-03,purchase,2,"a ""q"",\n\nnote",p1,o9,1',  # two breaks, blank between
]


@pytest.mark.parametrize("block", [60, 97, 150, 400])
@pytest.mark.parametrize("crlf", [False, True])
def test_blocks_read_exactly_what_the_whole_file_reads(
    tmp_path: Path, block: int, crlf: bool
) -> None:
    body = _lines(300)
    for i, extra in enumerate(TRICKY * 6):
        body.insert(7 + 37 * i, extra)
    text = HEADER + "\n".join(body) + "\n"
    path = write(tmp_path / "events.csv", text.replace("\n", "\r\n") if crlf else text)
    options = ReadOptions(known_names=frozenset(HEADER.strip().split(",")))
    whole = read_table(path, options)
    blocks = list(read_chunks(path, options, chunk_bytes=block))
    assert len(blocks) > 5
    assert {(b.dialect, b.sha256, b.columns) for b in blocks} == {
        (whole.dialect, whole.sha256, whole.columns)
    }
    data, malformed = _rows(blocks)
    whole_data, whole_malformed = _rows([whole])
    pd.testing.assert_frame_equal(data, whole_data)
    pd.testing.assert_frame_equal(malformed, whole_malformed)
    assert "books,\nrare" in set(data["category"])


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffcustomer_id;occurred_at;event_type\n" + "c1;2021-01-02;browse\n" * 300,
        "c1 2021-01-02   browse\n" * 290 + "c2  2021-01-03 login extra\n" * 3,
        "c1,2021-01-02,browse\n" * 250,  # headerless, sniffed from more than one block
    ],
)
def test_dialects_bom_and_headerless_files_in_blocks(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "events.txt", text)
    whole = read_table(path)
    blocks = list(read_chunks(path, chunk_bytes=64))
    assert {b.dialect for b in blocks} == {whole.dialect}
    assert [len(b.data) for b in blocks] != [len(whole.data)]
    data, malformed = _rows(blocks)
    whole_data, whole_malformed = _rows([whole])
    pd.testing.assert_frame_equal(data, whole_data)
    pd.testing.assert_frame_equal(malformed, whole_malformed)


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("blank_line", [False, True])
@pytest.mark.parametrize("wrong_width", [False, True])
def test_plain_blocks_split_from_their_own_bytes_read_what_the_whole_file_reads(
    tmp_path: Path, header: bool, blank_line: bool, wrong_width: bool
) -> None:
    from unittest import mock

    import features.io as io_module

    body = _lines(700, seed=3)
    if blank_line:
        body.insert(120, "")
    if wrong_width:
        body.insert(77, "c9,2021-01-05,login,,,")
    text = (HEADER if header else "") + "\n".join(body)  # no final line feed
    path = write(tmp_path / "events.csv", text)
    options = ReadOptions(known_names=frozenset(HEADER.strip().split(",")))
    whole = read_table(path, options)
    split_arrow = io_module._split_arrow
    calls: list[tuple[bool, bool]] = []

    def spy(*args: object, **kwargs: object) -> object:
        got = split_arrow(*args, **kwargs)  # type: ignore[arg-type]
        calls.append((kwargs["joined"] is not None, got is not None))
        return got

    with mock.patch.object(io_module, "_split_arrow", spy):
        blocks = list(read_chunks(path, options, chunk_bytes=1000))
    assert len(blocks) > 5
    # Most blocks hand their own bytes over instead of joining their lines again, and
    # Arrow's split of those bytes is used (not refused for a wrong number of rows).
    handed = [parsed for joined, parsed in calls if joined]
    assert len(handed) >= len(blocks) - 3
    assert sum(handed) >= len(handed) - int(wrong_width)
    data, malformed = _rows(blocks)
    whole_data, whole_malformed = _rows([whole])
    pd.testing.assert_frame_equal(data, whole_data)
    pd.testing.assert_frame_equal(malformed, whole_malformed)
    assert len(malformed) == int(wrong_width)


def test_a_bad_byte_in_a_later_block_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes((HEADER + "c1,2021-01-02,browse,,,,,\n" * 50).encode() + b"c1,\xff\n")
    options = ReadOptions(encoding="ascii")
    with pytest.raises(Exception, match="line 52: expected text in encoding 'ascii'"):
        list(read_chunks(path, options, chunk_bytes=100))


@pytest.mark.parametrize("scan_bytes", [1, 2, 3, 5, 8, 13, 64, 1 << 20])
def test_the_utf8_scan_agrees_with_decoding_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_bytes: int
) -> None:
    # Reads of every size cut lines and multi-byte characters anywhere; a bad byte in a
    # first line, a middle line, the tail after the last line feed or a lone line
    # longer than a read is found wherever it falls.
    monkeypatch.setattr(chunks_module, "_SCAN_BYTES", scan_bytes)
    good = "id,name\nc1,caf\u00e9\nc2,\u4e2d\u6587\nc3,\U0001f600 x\n\nc4," + "\u00e9" * 40
    bad_bytes = [
        b"\xff" + good.encode(),
        good.encode().replace(b"c2,", b"c2,\xe4\xb8"),  # a cut character inside a line
        good.encode() + b"\n\xc3",  # a cut character in the tail
        good.encode().replace("\u00e9".encode() * 40, b"\xe9" * 40),  # Latin-1 in a long line
    ]
    for number, data in enumerate([good.encode(), good.encode() + b"\n", *bad_bytes]):
        path = tmp_path / f"f{number}.csv"
        path.write_bytes(data)
        try:
            data.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert chunks_module._scan(path, check_utf8=True) == (
            hashlib.sha256(data).hexdigest(),
            valid,
        ), number


def _import(
    root: Path,
    events: Path,
    monkeypatch: pytest.MonkeyPatch | None,
    *,
    keys: EncryptionKeys | None = None,
    config: FactsConfig | None = None,
    customers: Path | None = DATA / "customers.csv",
    **store_args: int,
) -> tuple[ImportReport, FactStore]:
    """Import, streamed in tiny blocks and spilled when ``monkeypatch`` is given."""
    if monkeypatch is not None:
        # The importer reads chunks.CHUNK_BYTES when it runs: tiny blocks here.
        monkeypatch.setattr(chunks_module, "CHUNK_BYTES", 120)
        monkeypatch.setattr(spill_module, "SPILL_FROM_ROWS", 7)
        monkeypatch.setattr(spill_module, "PART_ROWS", 4)
    store = FactStore(root / "facts", keys=keys, **store_args)
    report = import_facts(
        store,
        config=config or FactsConfig(),
        quarantine_dir=root / "quarantine",
        now=NOW,
        events=events,
        customers=customers,
        events_options=SourceOptions(),
    )
    return report, store


def _events_text() -> str:
    rows = _lines(420, seed=3)
    rows += rows[5:25]  # exact repeats in later blocks: no order id, kept as separate
    rows += ["c1,2021-02-01,purchase,3,,,o7,1"] * 3  # same order id: duplicates
    rows += ["c9,2021-02-02,purchase,4,,,,1", "c1,2021-02-03,purchase,-1,,,,1"]
    rows.insert(40, TRICKY[0])
    rows.insert(90, TRICKY[1])
    # Past the sniffer's first 200 lines: quoted line breaks across tiny blocks.
    rows.insert(260, TRICKY[0])
    rows.insert(330, TRICKY[4])
    return HEADER + "\n".join(rows) + "\n"


def _outcome(report: ImportReport, store: FactStore) -> tuple[object, ...]:
    quarantine = (
        pd.read_csv(
            io.BytesIO(open_bytes(report.quarantine_path, store.keys)),
            dtype=str,
            keep_default_na=False,
        )
        if report.quarantine_path
        else None
    )
    manifest = {k: v for k, v in store.manifest().items() if k not in ("fingerprint",)}
    return (
        store.load_events().astype(str).to_dict("list"),
        store.load_customers().astype(str).to_dict("list"),
        quarantine.to_dict("list") if quarantine is not None else None,
        [(f.rows_read, f.accepted, f.quarantined) for f in report.files],
        report.events_added,
        report.identical_kept,
        report.customers_created,
        {k: v for k, v in manifest.items() if k != "updated_at"},
    )


@pytest.mark.parametrize("unknown", ["quarantine", "create"])
def test_streamed_and_spilled_import_equals_the_whole_file_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unknown: str
) -> None:
    events = write(tmp_path / "events.csv", _events_text())
    config = FactsConfig(unknown_customer=unknown)
    whole = _import(tmp_path / "whole", events, None, config=config)
    streamed = _import(tmp_path / "streamed", events, monkeypatch, config=config)
    assert streamed[1].events_path.is_file()
    assert _outcome(*streamed) == _outcome(*whole)
    assert whole[0].identical_kept > 0
    # The same file again adds nothing, streamed or not.
    again = _import(tmp_path / "streamed", events, monkeypatch, config=config)
    assert again[0].events_added == 0
    assert len(again[1].load_events()) == len(whole[1].load_events())
    assert not list((tmp_path / "streamed" / "facts").glob(".spill-*"))


def test_spilled_import_appends_a_segment_and_compacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a.csv", HEADER + "\n".join(_lines(60, seed=1)) + "\n")
    second = write(tmp_path / "b.csv", HEADER + "\n".join(_lines(80, seed=2)) + "\n")
    third = write(tmp_path / "c.csv", HEADER + "\n".join(_lines(70, seed=4)) + "\n")
    results = {}
    for mode, patch in (("whole", None), ("streamed", monkeypatch)):
        root = tmp_path / mode
        _import(root, first, patch, segment_min_rows=1, max_segments=1)
        _, store = _import(root, second, patch, customers=None, segment_min_rows=1)
        assert len(store.segment_paths()) == 1
        _, store = _import(root, third, patch, customers=None, max_segments=1)
        assert store.segment_paths() == []  # compacted with the third import
        results[mode] = store.load_events().astype(str).to_dict("list")
    assert results["streamed"] == results["whole"]


def test_spilled_import_into_an_encrypted_store_seals_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test key")
    events = write(tmp_path / "events.csv", _events_text())
    seen_spill: list[bytes] = []
    real_write = spill_module.EventSpill._write_ipc

    def watching(self: spill_module.EventSpill, table: object, path: Path) -> None:
        real_write(self, table, path)  # type: ignore[arg-type]
        seen_spill.append(path.read_bytes())

    monkeypatch.setattr(spill_module.EventSpill, "_write_ipc", watching)
    _, store = _import(tmp_path, events, monkeypatch, keys=keys)
    assert seen_spill
    assert all(is_sealed(blob) for blob in seen_spill)
    assert is_sealed(store.events_path.read_bytes())
    _, whole = _import(tmp_path / "whole", events, None)
    assert store.load_events().astype(str).equals(whole.load_events().astype(str))


def test_a_failed_spilled_import_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a.csv", HEADER + "\n".join(_lines(60, seed=1)) + "\n")
    _, store = _import(tmp_path, first, monkeypatch)
    before = (store.events_path.read_bytes(), store.fingerprint())
    bad = write(tmp_path / "b.csv", HEADER + "\n".join(_lines(80, seed=2)) + "\n")

    def failing(self: spill_module.EventSpill, destination: Path, row_group_size: int) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(spill_module.EventSpill, "write_sorted", failing)
    with pytest.raises(OSError, match="disk full"):
        _import(tmp_path, bad, monkeypatch, customers=None)
    assert (store.events_path.read_bytes(), store.fingerprint()) == before
    assert not list(store.facts_dir.glob(".spill-*"))
    assert not list(store.facts_dir.glob("*.tmp-*"))


@pytest.mark.parametrize("sealed", [False, True])
def test_a_streamed_append_reads_each_stored_file_once_and_finds_duplicates_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealed: bool
) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test key") if sealed else None
    # Every row distinct (one minute apart), so exactly the rows sent again are duplicates.
    stamp = pd.Timestamp("2021-03-01")
    rows = [
        f"c{1 + i % 3},{(stamp + pd.Timedelta(minutes=i)).isoformat()},browse,,,,,"
        for i in range(540)
    ]
    first, second, third = rows[:60], rows[60:140], rows[140:]
    # Rows of the base file and of the segment come again, spread over the blocks after
    # the first (which holds the dialect sniffer's 200 lines).
    for i, row in enumerate(first[:10] + second[:10]):
        third.insert(220 + 9 * i, row)
    paths = [
        write(tmp_path / f"{name}.csv", HEADER + "\n".join(rows) + "\n")
        for name, rows in (("a", first), ("b", second), ("c", third))
    ]
    hashed: list[Path] = []
    blocks: list[int] = []
    real_hash, real_prepare = StoredKeys._add_file, EventBlocks.prepare

    def hashing(self: StoredKeys, con: duckdb.DuckDBPyConnection, number: int, path: Path) -> None:
        hashed.append(path)
        real_hash(self, con, number, path)

    def adding(self: EventBlocks, raw: RawTable) -> PreparedBlock:
        blocks.append(len(raw.data))
        return real_prepare(self, raw)

    outcomes = {}
    for mode, patch in (("whole", None), ("streamed", monkeypatch)):
        root = tmp_path / mode
        _import(root, paths[0], patch, keys=keys, segment_min_rows=1)
        _, store = _import(root, paths[1], patch, customers=None, keys=keys, segment_min_rows=1)
        stored_files = store.event_paths()
        assert len(stored_files) == 2  # the base file and one segment
        hashed.clear()
        blocks.clear()
        with pytest.MonkeyPatch.context() as spy:
            spy.setattr(StoredKeys, "_add_file", hashing)
            spy.setattr(EventBlocks, "prepare", adding)
            report, store = _import(
                root, paths[2], patch, customers=None, keys=keys, segment_min_rows=1
            )
        # The base file and the segment: each read once, however many blocks came.
        assert hashed == stored_files
        assert len(blocks) > 2 if mode == "streamed" else len(blocks) == 1
        # Two segments of the same import time are read in their random names' order.
        events = store.load_events().astype(str)
        ordered = events.sort_values(list(events.columns), ignore_index=True)
        outcomes[mode] = (ordered.to_dict("list"), *_outcome(report, store)[1:])
        assert report.quarantine_path is not None
        quarantine = pd.read_csv(
            io.BytesIO(open_bytes(report.quarantine_path, keys)), dtype=str, keep_default_na=False
        )
        stored_dups = quarantine["message"].str.contains("already stored").sum()
        assert stored_dups == 20
    assert outcomes["streamed"] == outcomes["whole"]


class _FailingWriter(pq.ParquetWriter):
    """A Parquet writer whose second range fails (on the spill's writer thread)."""

    calls = 0

    def write_table(self, table: object, row_group_size: int | None = None) -> None:
        type(self).calls += 1
        if type(self).calls == 2:
            raise OSError("disk full")
        super().write_table(table, row_group_size=row_group_size)  # type: ignore[arg-type]


# The import's own threads (features.importer, features.spill); other components' threads
# (a console's profile loader, say) may live in the same test process.
IMPORT_THREADS = ("tagsmith-import-", "tagsmith-spill-")


def _import_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(IMPORT_THREADS)]


def test_a_failure_on_the_writer_thread_leaves_the_store_as_it_was_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a.csv", HEADER + "\n".join(_lines(60, seed=1)) + "\n")
    _, store = _import(tmp_path, first, monkeypatch)
    before = (store.events_path.read_bytes(), store.fingerprint(), store.manifest())
    bad = write(tmp_path / "b.csv", HEADER + "\n".join(_lines(80, seed=2)) + "\n")
    writer_threads: list[str] = []
    real_write = _FailingWriter.write_table

    def watched(self: _FailingWriter, table: object, row_group_size: int | None = None) -> None:
        writer_threads.append(threading.current_thread().name)
        real_write(self, table, row_group_size)

    monkeypatch.setattr(_FailingWriter, "write_table", watched)
    monkeypatch.setattr(spill_module.pq, "ParquetWriter", _FailingWriter)
    with pytest.raises(OSError, match="disk full") as failed:
        _import(tmp_path, bad, monkeypatch, customers=None)
    assert any("events.parquet" in note for note in failed.value.__notes__)
    assert writer_threads
    assert set(writer_threads) == {"tagsmith-spill-write"}
    assert (store.events_path.read_bytes(), store.fingerprint(), store.manifest()) == before
    assert not list(store.facts_dir.glob(".spill-*"))
    assert not list(store.facts_dir.glob("*.tmp-*"))
    assert not _import_threads()


def test_a_bad_byte_in_a_later_block_fails_the_import_by_its_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read on the reader thread, a block ahead: the error still names the line and
    # nothing is stored.
    path = tmp_path / "events.csv"
    good = "".join(f"c{1 + i % 3},2021-01-{1 + i % 28:02d},browse,,,,,\n" for i in range(300))
    path.write_bytes((HEADER + good).encode() + b"c1,\xff\n")
    monkeypatch.setattr(chunks_module, "CHUNK_BYTES", 120)
    store = FactStore(tmp_path / "facts")
    with pytest.raises(FactFileError, match="line 302"):
        import_facts(
            store,
            config=FactsConfig(),
            quarantine_dir=tmp_path / "quarantine",
            now=NOW,
            events=path,
            customers=DATA / "customers.csv",
            events_options=SourceOptions(encoding="ascii"),
        )
    assert not store.events_path.exists()
    assert not list((tmp_path / "facts").glob(".spill-*"))
    assert not _import_threads()


def test_the_events_file_is_read_while_the_customers_file_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.importer as importer_module

    events = write(tmp_path / "events.csv", HEADER + "\n".join(_lines(200, seed=4)) + "\n")
    first_block = threading.Event()
    read_chunks_before = importer_module.read_chunks

    def reading(*args: object, **kwargs: object) -> object:
        for block in read_chunks_before(*args, **kwargs):  # type: ignore[arg-type]
            first_block.set()
            yield block

    checked_customers = importer_module._checked_customers
    seen: list[bool] = []

    def checking(*args: object, **kwargs: object) -> object:
        seen.append(first_block.wait(5))  # the reader got a block with no consumer yet
        return checked_customers(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importer_module, "read_chunks", reading)
    monkeypatch.setattr(importer_module, "_checked_customers", checking)
    report, _ = _import(tmp_path, events, monkeypatch)
    assert seen == [True]
    assert report.files[-1].rows_read == 200
    assert not _import_threads()

    # A customers file that fails stops the events reader too, and stores nothing.
    bad = write(tmp_path / "bad_customers.csv", "name\nx\n")
    store = FactStore(tmp_path / "other")
    with pytest.raises(FactFileError, match="customer_id"):
        import_facts(
            store,
            config=FactsConfig(),
            quarantine_dir=tmp_path / "quarantine",
            now=NOW,
            events=events,
            customers=bad,
        )
    assert not store.events_path.exists()
    assert not _import_threads()


def test_column_wise_take_and_filter_equal_arrow_s_table_take_and_filter() -> None:
    import pyarrow as pa

    rng = np.random.default_rng(5)
    n = 500
    ids = pa.chunked_array(
        [
            pa.array([f"c{i}" for i in rng.integers(0, 50, 200)], pa.large_string()),
            pa.array([None, *(f"c{i}" for i in rng.integers(0, 50, 299))], pa.large_string()),
        ]
    )
    table = pa.table(
        {
            "customer_id": ids,
            "amount": pa.array(rng.random(n), mask=rng.random(n) < 0.2),  # nulls, not NaN
            "_ok": pa.array(rng.random(n) < 0.9),
            # Nulls only (no order ids): made anew, not gathered.
            "order_id": pa.chunked_array(
                [pa.nulls(123, pa.large_string()), pa.nulls(377, pa.large_string())]
            ),
        }
    ).replace_schema_metadata({b"note": b"kept"})
    rows = pa.array(rng.permutation(n))
    mask = pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1)  # a null drops the row
    assert spill_module.take_rows(table, rows).equals(table.take(rows), check_metadata=True)
    assert spill_module.filter_rows(table, mask).equals(table.filter(mask), check_metadata=True)
    assert spill_module.take_rows(table, rows.slice(0, 0)).equals(table.take(rows.slice(0, 0)))


class _ShortReads(io.BufferedReader):
    """A file that hands out at most ``step`` bytes per ``readinto`` (a pipe or a slow
    disk may: the block must still be filled up to its size)."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(io.BytesIO(data))
        self.step = step

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        return super().readinto(view[: self.step])


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_a_block_is_the_pending_bytes_then_a_full_read_into_a_buffer_of_its_own(
    step: int,
) -> None:
    data = bytes(range(256)) * 4
    handle = _ShortReads(data, step)
    first, eof = chunks_module._read_after(handle, b"", 300)
    assert (bytes(first), eof) == (data[:300], False)
    second, eof = chunks_module._read_after(handle, b"tail\n", 300)
    assert (bytes(second), eof) == (b"tail\n" + data[300:600], False)
    assert second is not first  # Arrow arrays of the first block still point into it
    last, eof = chunks_module._read_after(handle, bytearray(b"x"), 1000)
    assert (bytes(last), eof) == (b"x" + data[600:], False)
    rest, eof = chunks_module._read_after(handle, b"y", 1000)
    assert (bytes(rest), eof) == (b"y", True)
