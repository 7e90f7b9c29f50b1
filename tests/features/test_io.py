"""Reading files: dialects, encodings, headers, Parquet, folders and file-level errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features import FactFileError
from features.importer import SourceOptions
from features.io import ReadOptions, parse_mapping, read_table
from features.store import FactStore
from tests.features.facts_helpers import CDNOW_OPTIONS, DATA, run_import, write

ROWS = [
    ["c1", "2021-01-02", "purchase", "12.5", "北京"],
    ["c2", "2021-01-03", "browse", "", "上海 浦东"],
]
HEADER = ["customer_id", "occurred_at", "event_type", "amount", "category"]


def _text(delimiter: str, header: bool) -> str:
    lines = ([HEADER] if header else []) + ROWS
    return "".join(delimiter.join(fields) + "\n" for fields in lines)


@pytest.mark.parametrize(
    ("delimiter", "sniffed"), [(",", ","), ("\t", "\t"), (";", ";"), ("|", "|")]
)
@pytest.mark.parametrize("header", [True, False])
def test_delimiters_and_header_are_sniffed(
    tmp_path: Path, delimiter: str, sniffed: str, header: bool
) -> None:
    path = write(tmp_path / "e.csv", _text(delimiter, header))
    table = read_table(path, ReadOptions(known_names=frozenset(HEADER)))
    assert table.delimiter == sniffed
    assert table.has_header is header
    assert table.columns == (tuple(HEADER) if header else ("0", "1", "2", "3", "4"))
    assert table.data.iloc[:, 4].tolist() == ["北京", "上海 浦东"]
    assert table.line_number.tolist() == ([2, 3] if header else [1, 2])


def test_runs_of_whitespace(tmp_path: Path) -> None:
    path = write(tmp_path / "e.txt", "c1   2021-01-02\tpurchase 12.5\n  c2 2021-01-03 browse 0\n")
    table = read_table(path)
    assert table.delimiter == "whitespace"
    assert table.data.to_numpy().tolist() == [
        ["c1", "2021-01-02", "purchase", "12.5"],
        ["c2", "2021-01-03", "browse", "0"],
    ]


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gbk"), ("utf-16", "utf-16")],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, detected: str) -> None:
    path = write(tmp_path / "e.csv", _text(",", True), encoding=encoding)
    table = read_table(path)
    assert table.encoding == detected
    assert table.columns[0] == "customer_id"  # no BOM left on the first name
    assert table.data["category"].tolist() == ["北京", "上海 浦东"]


def test_gbk_sample_imports(tmp_path: Path) -> None:
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events_gbk.csv")
    assert report.files[1].dialect == "csv (comma, header, gbk)"
    events = FactStore(tmp_path / "facts").load_events()
    assert sorted(events["category"].tolist()) == ["图书", "玩具"]


def test_quoted_fields_keep_their_delimiters(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        "customer_id,occurred_at,event_type,amount,category\n"
        'c1,2021-01-02,purchase,12.5,"books, used"\n'
        'c2,2021-01-03,browse,,"say ""hi"""\n',
    )
    table = read_table(path)
    assert table.data["category"].tolist() == ["books, used", 'say "hi"']
    assert table.text.tolist()[0] == 'c1,2021-01-02,purchase,12.5,"books, used"'


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "\n" + _text(",", True).replace("\n", "\n\n", 1) + "\n\n")
    table = read_table(path)
    assert table.rows_read == 2
    assert table.line_number.tolist() == [4, 5]


def test_parquet_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "occurred_at": pd.to_datetime(
                ["2021-01-02 10:00", "2021-01-06"], utc=True, format="ISO8601"
            ),
            "event_type": ["purchase", "browse"],
            "amount": [12.5, None],
        }
    )
    frame.to_parquet(folder / "part-1.parquet")
    write(
        folder / "part-2.csv", "customer_id,occurred_at,event_type,amount\nc3,2021-02-02,login,\n"
    )
    write(folder / ".hidden.csv", "garbage")
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=folder)
    assert [Path(f.source).name for f in report.files[1:]] == ["part-1.parquet", "part-2.csv"]
    assert report.files[1].dialect == "parquet"
    events = FactStore(tmp_path / "facts").load_events()
    assert len(events) == 3
    c1 = events[events["customer_id"] == "c1"].iloc[0]
    assert c1["occurred_at"] == pd.Timestamp("2021-01-02T10:00:00Z")


def test_cdnow_format_imports_with_flags_alone(tmp_path: Path) -> None:
    report = run_import(tmp_path, events=DATA / "cdnow_sample.txt", events_options=CDNOW_OPTIONS)
    counts = report.files[0]
    assert (counts.rows_read, counts.accepted, counts.quarantined) == (15, 15, {})
    assert counts.dialect == "csv (whitespace, no header, utf-8)"
    assert report.customers_derived == 5
    store = FactStore(tmp_path / "facts")
    customers = store.load_customers().set_index("customer_id")
    assert customers.index.tolist() == ["00001", "00002", "00003", "00004", "00005"]
    assert customers.loc["00003", "signup_at"] == pd.Timestamp("1997-01-02T00:00:00Z")
    events = store.load_events()
    assert set(events["event_type"]) == {"purchase"}
    assert events["amount"].sum() == pytest.approx(401.03)
    assert events["quantity"].sum() == 33
    assert store.last_event_at() == pd.Timestamp("1998-05-28T00:00:00Z")
    # Sorted by customer then time: DuckDB and feature builds rely on it.
    assert events[["customer_id", "occurred_at"]].equals(
        events[["customer_id", "occurred_at"]].sort_values(["customer_id", "occurred_at"])
    )


def test_mapping_by_header_name_and_col_prefix(tmp_path: Path) -> None:
    named = write(tmp_path / "n.csv", "who,when,what,paid\nc1,2021-01-02,purchase,3\n")
    run_import(
        tmp_path,
        customers=DATA / "customers.csv",
        events=named,
        events_options=SourceOptions(
            mapping=parse_mapping("customer_id=who, occurred_at=WHEN,event_type=what,amount=paid")
        ),
    )
    bare = write(tmp_path / "b.csv", "c2;2021-01-07;9\n")
    report = run_import(
        tmp_path,
        events=bare,
        events_options=SourceOptions(
            mapping=parse_mapping("customer_id=col0,occurred_at=col1,amount=col2"),
            event_type="purchase",
        ),
    )
    assert report.events_added == 1
    assert len(FactStore(tmp_path / "facts").load_events()) == 2


# File-level problems: a FactFileError naming the file (and column or line); nothing written.
def _assert_nothing_written(root: Path) -> None:
    assert not (root / "facts" / "events.parquet").exists()
    assert not (root / "quarantine").exists() or not any((root / "quarantine").iterdir())


@pytest.mark.parametrize(
    ("content", "options", "match"),
    [
        pytest.param(b"", None, r"empty file", id="empty file"),
        pytest.param(b"\n  \n", None, r"empty file", id="only blank lines"),
        pytest.param(
            b"customer_id,occurred_at,event_type\n",
            None,
            r"after the header on line 1",
            id="header only",
        ),
        pytest.param(
            b"customer_id,event_type\nc1,browse\n",
            None,
            r"missing required column\(s\) \['occurred_at'\].*columns \['customer_id', "
            r"'event_type'\]",
            id="missing column",
        ),
        pytest.param(
            b"customer_id,occurred_at,event_type\nc1,2021-01-01,browse\nc2,\xff\xfe\xfd,x\n",
            None,
            r"line 3: expected text in UTF-8, UTF-8 with BOM or GBK",
            id="undecodable",
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            None,
            r"Got binary content",
            id="binary file",
        ),
        pytest.param(
            b"customer_id,occurred_at,event_type\nc1,someday,browse\nc2,never,login\n",
            None,
            r"expected at least one valid events row.*bad_timestamp.*line 2",
            id="every row rejected",
        ),
        pytest.param(
            b"1 19970101 2\n",
            SourceOptions(mapping={"customer_id": "0", "occurred_at": "7"}, event_type="purchase"),
            r"--map occurred_at=7: expected a column name .* or a 0-based position below 3",
            id="mapped source missing",
        ),
        pytest.param(
            b"1 19970101 2\n",
            SourceOptions(mapping={"client": "0"}, event_type="purchase"),
            r"--map targets must be events columns",
            id="unknown map target",
        ),
        pytest.param(
            b"a,b\n1,2\n",
            SourceOptions(event_type="shopping"),
            r"--event-type must be one of",
            id="unknown constant event type",
        ),
    ],
)
def test_file_problems_stop_the_import(
    tmp_path: Path, content: bytes, options: SourceOptions | None, match: str
) -> None:
    path = tmp_path / "in" / "events.csv"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(FactFileError, match=match) as info:
        run_import(tmp_path, events=path, events_options=options, derive_customers=True)
    if "map" not in match and "event-type" not in match:
        assert str(path) in str(info.value)
    _assert_nothing_written(tmp_path)


def test_broken_parquet_and_empty_folder(tmp_path: Path) -> None:
    broken = write(tmp_path / "in" / "e.parquet", "PAR1 not really")
    with pytest.raises(FactFileError, match=r"e\.parquet: expected a Parquet file"):
        run_import(tmp_path, events=broken)
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(FactFileError, match=r"none: expected a folder holding data files"):
        run_import(tmp_path, events=empty)
    with pytest.raises(FactFileError, match=r"missing\.csv: expected an existing file"):
        run_import(tmp_path, events=tmp_path / "missing.csv")
    _assert_nothing_written(tmp_path)


def test_parse_mapping_refuses_bad_entries() -> None:
    assert parse_mapping("a=0, b = x") == {"a": "0", "b": "x"}
    with pytest.raises(FactFileError, match="target=source"):
        parse_mapping("customer_id")
    with pytest.raises(FactFileError, match="twice"):
        parse_mapping("a=1,a=2")


def test_crlf_bom_file_and_typed_customers_round_trip(tmp_path: Path) -> None:
    text = (DATA / "customers.csv").read_text(encoding="utf-8").replace("\n", "\r\n")
    customers = write(tmp_path / "c.csv", text, encoding="utf-8-sig")
    report = run_import(tmp_path, customers=customers)
    assert report.files[0].dialect == "csv (comma, header, utf-8-sig)"
    stored = FactStore(tmp_path / "facts").load_customers().set_index("customer_id")
    assert str(stored["birth_year"].dtype) == "Int64"
    assert stored.loc["c1", "birth_year"] == 1985
    assert pd.isna(stored.loc["c3", "birth_year"])
    assert stored.loc["c2", "signup_at"] == pd.Timestamp("2021-01-05T00:30:00Z")
    assert stored.loc["c1", "city"] == "Harbin"  # no stray carriage return
    assert pd.isna(stored.loc["c2", "occupation"])
