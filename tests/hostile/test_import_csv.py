"""Hostile finding 14-10: valid rows refused, null-like ids accepted, ``.csv.csv`` names.

* A quoted field holding a line break and a comma is one record (it was quarantined as
  ``malformed_row``), while one stray quote still cannot swallow the lines after it.
* ``null``, ``NaN``, ``None``, ``N/A``, ``-`` as a customer id are refused as
  ``blank_id`` (they became customers under ``unknown_customer: create``).
* The quarantine file of ``events.csv`` is ``<time>-events.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features import FactsConfig, ReasonCode
from features.store import FactStore
from tests.features.facts_helpers import DATA, run_import, write

HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"


def test_quoted_field_with_line_break_and_comma_is_one_record(tmp_path: Path) -> None:
    events = write(
        tmp_path / "events.csv",
        HEADER
        + "c1,2021-01-02,browse,,books,p1,,\n"
        + 'c1,2021-01-03,purchase,25.5,"books,\nrare",p1,o1,1\n'
        + "c2,2021-01-06,purchase,100,toys,p7,o2,2\n"
        + "c2,2021-01-07,purchase,-1,toys,p7,o3,2\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    counts = report.files[-1]
    assert (counts.rows_read, counts.accepted) == (4, 3)
    assert counts.quarantined == {ReasonCode.NEGATIVE_AMOUNT.value: 1}
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    # Line numbers after the two-line record still name the physical line.
    assert quarantine["line_number"].tolist() == ["6"]
    stored = FactStore(tmp_path / "facts").load_events()
    assert "books,\nrare" in set(stored["category"].dropna())


def test_crlf_file_with_quoted_line_break(tmp_path: Path) -> None:
    text = HEADER + 'c1,2021-01-03,purchase,25.5,"a ""quoted"",\nnote",p1,o1,1\n'
    events = write(tmp_path / "events.csv", text.replace("\n", "\r\n"))
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    assert report.events_added == 1
    stored = FactStore(tmp_path / "facts").load_events()
    assert stored["category"].tolist() == ['a "quoted",\nnote']


def test_stray_quotes_do_not_swallow_the_lines_between(tmp_path: Path) -> None:
    good = "".join(f"c1,2021-01-{d:02d},browse,,books,p1,,\n" for d in range(2, 12))
    events = write(
        tmp_path / "events.csv",
        HEADER
        + 'c1,"2021-01-02,browse,,,,,\n'  # stray quote, line 2
        + good
        + 'c2,2021-01-07,browse,,"toys,,,\n',  # another, line 13
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    counts = report.files[-1]
    assert (counts.rows_read, counts.accepted) == (12, 10)
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["reason"].tolist() == [ReasonCode.MALFORMED_ROW.value] * 2
    assert quarantine["line_number"].tolist() == ["2", "13"]
    assert quarantine["message"].tolist() == ["unbalanced double quote"] * 2


@pytest.mark.parametrize("token", ["null", "NaN", "None", "N/A", "-", "NULL", "nan"])
def test_null_like_ids_are_blank_not_customers(tmp_path: Path, token: str) -> None:
    events = write(
        tmp_path / "events.csv",
        HEADER + "c1,2021-01-03,purchase,25.5,books,p1,o1,1\n"
        f"{token},2021-01-04,purchase,3,books,p1,o2,1\n",
    )
    report = run_import(
        tmp_path,
        customers=DATA / "customers.csv",
        events=events,
        config=FactsConfig(unknown_customer="create"),
    )
    assert report.customers_created == 0
    assert report.files[-1].quarantined == {ReasonCode.BLANK_ID.value: 1}
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["message"].tolist() == [
        f"field 'customer_id': expected a non-empty id, got '{token}' (a null marker)"
    ]
    stored = FactStore(tmp_path / "facts").load_customers()
    assert token not in set(stored["customer_id"])


def test_null_like_customer_ids_are_refused_in_customers_files(tmp_path: Path) -> None:
    customers = write(
        tmp_path / "customers.csv",
        "customer_id,signup_at\nk1,2021-01-01\nnull,2021-01-01\nN/A,2021-01-02\n",
    )
    report = run_import(tmp_path, customers=customers)
    assert report.customers_added == 1
    assert report.files[0].quarantined == {ReasonCode.BLANK_ID.value: 2}


def test_quarantine_file_is_named_after_the_source_stem(tmp_path: Path) -> None:
    events = write(
        tmp_path / "events.csv",
        HEADER + "c1,2021-01-03,purchase,-1,b,p,o,1\n" + "c1,2021-01-04,browse,,b,p,,\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    assert report.quarantine_path is not None
    name = report.quarantine_path.name
    assert name.endswith("-events.csv"), name
    assert not name.endswith(".csv.csv"), name


def test_two_stray_quotes_that_pair_up_stay_two_malformed_rows(tmp_path: Path) -> None:
    # Joined, the two lines would split into 8 fields, but only by reading text after
    # a closing quote: not a well-formed record, so neither line is joined.
    line = 'c1,"2021-01-04,browse,,,,,'
    events = write(
        tmp_path / "events.csv",
        HEADER + "c1,2021-01-02,browse,,books,p1,,\n" + line + "\n" + line + "\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    counts = report.files[-1]
    assert (counts.rows_read, counts.accepted) == (3, 1)
    assert counts.quarantined == {ReasonCode.MALFORMED_ROW.value: 2}
