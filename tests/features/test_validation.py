"""Row validation: every bad input lands in quarantine with its reason, counts add up."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import FactFileError, FactsConfig, ReasonCode
from features.importer import SourceOptions
from features.schema import AttributeSpec
from features.store import FactStore
from tests.features.facts_helpers import DATA, run_import, write

EVENTS_HEADER = "customer_id,occurred_at,event_type,amount,category,product_id,order_id,quantity\n"
GOOD_EVENTS = (
    "c1,2021-01-02,browse,,books,p1,,\n"
    "c1,2021-01-03,purchase,25.5,books,p1,o1,1\n"
    "c2,2021-01-06,purchase,100,toys,p7,o2,2\n"
)

# (case id, bad line, expected reason). Each line is appended to three good rows.
BAD_EVENT_LINES = [
    ("blank id", ",2021-01-04,browse,,,,,", ReasonCode.BLANK_ID),
    ("whitespace id", "   ,2021-01-04,browse,,,,,", ReasonCode.BLANK_ID),
    ("impossible date", "c1,2021-13-45,browse,,,,,", ReasonCode.BAD_TIMESTAMP),
    ("blank timestamp", "c1,,browse,,,,,", ReasonCode.BAD_TIMESTAMP),
    ("words for a timestamp", "c1,yesterday,browse,,,,,", ReasonCode.BAD_TIMESTAMP),
    ("non-numeric amount", "c1,2021-01-04,purchase,12.5x,,,,", ReasonCode.BAD_AMOUNT),
    ("infinite amount", "c1,2021-01-04,purchase,inf,,,,", ReasonCode.BAD_AMOUNT),
    ("negative amount", "c1,2021-01-04,purchase,-3,,,,", ReasonCode.NEGATIVE_AMOUNT),
    ("purchase without amount", "c1,2021-01-04,purchase,,,,,", ReasonCode.MISSING_AMOUNT),
    ("refund without amount", "c2,2021-01-09,refund,,,,,", ReasonCode.MISSING_AMOUNT),
    ("misspelt event type", "c1,2021-01-04,purchas,3,,,,", ReasonCode.UNKNOWN_EVENT_TYPE),
    ("blank event type", "c1,2021-01-04,,3,,,,", ReasonCode.UNKNOWN_EVENT_TYPE),
    ("negative quantity", "c1,2021-01-04,purchase,3,,,,-1", ReasonCode.BAD_QUANTITY),
    ("non-numeric quantity", "c1,2021-01-04,purchase,3,,,,two", ReasonCode.BAD_QUANTITY),
    ("event next year", "c1,2022-06-01,browse,,,,,", ReasonCode.FUTURE_EVENT),
    ("event before signup", "c1,2020-12-31,browse,,,,,", ReasonCode.BEFORE_SIGNUP),
    ("exact duplicate", "c1,2021-01-03,purchase,25.5,books,p1,o1,1", ReasonCode.DUPLICATE),
    ("unknown customer", "c99,2021-01-04,browse,,,,,", ReasonCode.UNKNOWN_CUSTOMER),
    ("too few fields", "c1,2021-01-04,browse", ReasonCode.MALFORMED_ROW),
    ("too many fields", "c1,2021-01-04,browse,,,,,,extra", ReasonCode.MALFORMED_ROW),
    ("unbalanced quote", 'c1,"2021-01-04,browse,,,,,', ReasonCode.MALFORMED_ROW),
]


@pytest.mark.parametrize(
    ("line", "reason"),
    [pytest.param(line, reason, id=case) for case, line, reason in BAD_EVENT_LINES],
)
def test_bad_event_row_is_quarantined_with_its_reason(
    tmp_path: Path, line: str, reason: ReasonCode
) -> None:
    events = write(tmp_path / "events.csv", EVENTS_HEADER + GOOD_EVENTS + line + "\n")
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    counts = report.files[-1]
    assert (counts.rows_read, counts.accepted) == (4, 3)
    assert counts.quarantined == {reason.value: 1}
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["reason"].tolist() == [reason.value]
    assert quarantine["line_number"].tolist() == ["5"]
    assert quarantine["original_line"].tolist() == [line]
    assert quarantine["source_file"].tolist() == [str(events)]


def test_messages_name_the_field_and_the_expected_value(tmp_path: Path) -> None:
    lines = "".join(line + "\n" for _, line, _ in BAD_EVENT_LINES)
    events = write(tmp_path / "events.csv", EVENTS_HEADER + GOOD_EVENTS + lines)
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["reason"].tolist() == [r.value for _, _, r in BAD_EVENT_LINES]
    messages = dict(zip(quarantine["reason"], quarantine["message"], strict=False))
    assert messages["negative_amount"] == "field 'amount': expected a number >= 0, got '-3'"
    assert "field 'occurred_at': expected an ISO 8601 time" in messages["bad_timestamp"]
    assert "field 'event_type': expected one of purchase, refund" in messages["unknown_event_type"]
    assert "expected a time no later than 2021-06-02T00:00:00+00:00" in messages["future_event"]
    assert "signup 2021-01-01" in messages["before_signup"]
    assert "got 'c99'" in messages["unknown_customer"]
    malformed = quarantine.loc[quarantine["reason"] == "malformed_row", "message"].tolist()
    assert malformed == [
        "expected 8 fields separated by comma; got 3",
        "expected 8 fields separated by comma; got 9",
        "unbalanced double quote",
    ]


CUSTOMERS_HEADER = "customer_id,signup_at,gender,birth_year,region,city,channel,occupation\n"
GOOD_CUSTOMERS = "a1,2021-01-01,female,1985,north,Harbin,web,teacher\n"

BAD_CUSTOMER_LINES = [
    ("customer blank id", ",2021-01-01,male,1980,north,,web,", ReasonCode.BLANK_ID),
    ("unparseable signup", "a2,01/02/2021x,male,1980,north,,web,", ReasonCode.BAD_TIMESTAMP),
    ("gender not allowed", "a2,2021-01-01,robot,1980,north,,web,", ReasonCode.BAD_ATTRIBUTE),
    ("birth year out of range", "a2,2021-01-01,male,1850,north,,web,", ReasonCode.BAD_ATTRIBUTE),
    ("birth year not integral", "a2,2021-01-01,male,1980.5,north,,web,", ReasonCode.BAD_ATTRIBUTE),
    ("region not allowed", "a2,2021-01-01,male,1980,mars,,web,", ReasonCode.BAD_ATTRIBUTE),
    ("signup next year", "a2,2022-06-01,male,1980,north,,web,", ReasonCode.FUTURE_EVENT),
    ("conflicting repeat", "a1,2021-02-01,male,1980,north,,web,", ReasonCode.DUPLICATE_CUSTOMER),
    (
        "identical repeat",
        "a1,2021-01-01,female,1985,north,Harbin,web,teacher",
        ReasonCode.DUPLICATE,
    ),
    ("customer too few fields", "a2,2021-01-01,male", ReasonCode.MALFORMED_ROW),
]


@pytest.mark.parametrize(
    ("line", "reason"),
    [pytest.param(line, reason, id=case) for case, line, reason in BAD_CUSTOMER_LINES],
)
def test_bad_customer_row_is_quarantined_with_its_reason(
    tmp_path: Path, line: str, reason: ReasonCode
) -> None:
    customers = write(tmp_path / "customers.csv", CUSTOMERS_HEADER + GOOD_CUSTOMERS + line + "\n")
    report = run_import(tmp_path, customers=customers)
    assert report.files[0].quarantined == {reason.value: 1}
    assert (report.files[0].rows_read, report.files[0].accepted) == (2, 1)
    quarantine = pd.read_csv(report.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["original_line"].tolist() == [line]


def test_missing_required_attribute(tmp_path: Path) -> None:
    config = FactsConfig(
        attributes=[AttributeSpec(name="region", allowed=["north", "south"], required=True)]
    )
    customers = write(
        tmp_path / "c.csv", "customer_id,signup_at,region\na,2021-01-01,North\nb,2021-01-01,\n"
    )
    report = run_import(tmp_path, customers=customers, config=config)
    assert report.files[0].quarantined == {"missing_attribute": 1}
    stored = pd.read_parquet(tmp_path / "facts" / "customers.parquet")
    assert stored["region"].tolist() == ["north"]  # matched case-insensitively


def test_customer_stored_with_other_values_is_not_overwritten(tmp_path: Path) -> None:
    run_import(tmp_path, customers=DATA / "customers.csv")
    changed = write(
        tmp_path / "changed.csv",
        CUSTOMERS_HEADER + "c1,2021-01-01,male,1985,north,,web,\nc9,2021-01-01,,,,,,\n",
    )
    report = run_import(tmp_path, customers=changed)
    assert report.files[0].quarantined == {"duplicate_customer": 1}
    stored = pd.read_parquet(tmp_path / "facts" / "customers.parquet")
    assert stored.set_index("customer_id").loc["c1", "gender"] == "female"


def test_duplicate_of_stored_event_across_files(tmp_path: Path) -> None:
    run_import(tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    overlap = write(
        tmp_path / "more.csv",
        EVENTS_HEADER + "c1,2021-01-03 11:00:00,purchase,25.5,books,p1,o1,1\n"
        "c1,2021-01-09,login,,,,,\n",
    )
    report = run_import(tmp_path, events=overlap)
    assert report.files[0].quarantined == {"duplicate": 1}
    assert report.events_added == 1


def test_unknown_customer_policy_create(tmp_path: Path) -> None:
    run_import(tmp_path, customers=DATA / "customers.csv")
    events = write(
        tmp_path / "e.csv",
        EVENTS_HEADER + "new,2021-03-05,browse,,,,,\nnew,2021-03-01,login,,,,,\n",
    )
    report = run_import(tmp_path, events=events, config=FactsConfig(unknown_customer="create"))
    assert report.customers_created == 1
    assert report.customers_derived == 0
    stored = pd.read_parquet(tmp_path / "facts" / "customers.parquet").set_index("customer_id")
    assert stored.loc["new", "signup_at"] == pd.Timestamp("2021-03-01T00:00:00Z")


def test_date_format_mismatch_is_bad_timestamp(tmp_path: Path) -> None:
    events = write(tmp_path / "e.txt", "1 19970101 1 2.5\n2 1997-01-02 1 3.5\n")
    report = run_import(
        tmp_path,
        events=events,
        events_options=SourceOptions(
            mapping={"customer_id": "0", "occurred_at": "1", "quantity": "2", "amount": "3"},
            event_type="purchase",
            date_format="%Y%m%d",
        ),
    )
    assert report.files[0].quarantined == {"bad_timestamp": 1}


def test_future_tolerance_is_configurable(tmp_path: Path) -> None:
    events = write(tmp_path / "e.csv", EVENTS_HEADER + "c1,2021-06-01T12:00:00,browse,,,,,\n")
    run_import(tmp_path / "default", customers=DATA / "customers.csv")
    report = run_import(tmp_path / "default", events=events)  # 12 h ahead, 24 h tolerated
    assert report.files[0].quarantined == {}
    run_import(tmp_path / "strict", customers=DATA / "customers.csv")
    with pytest.raises(FactFileError, match="future_event"):
        run_import(tmp_path / "strict", events=events, config=FactsConfig(future_tolerance_hours=0))


def test_null_tokens_in_number_fields_mean_missing(tmp_path: Path) -> None:
    events = write(
        tmp_path / "e.csv",
        EVENTS_HEADER + "c1,2021-01-02,browse,nan,,,,NaN\nc1,2021-01-03,login,NULL,,,,\\N\n"
        "c1,2021-01-04,purchase,nan,,,,\n",
    )
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=events)
    assert report.files[1].quarantined == {"missing_amount": 1}
    stored = pd.read_parquet(tmp_path / "facts" / "events.parquet")
    assert stored["amount"].isna().all()
    assert stored["quantity"].isna().all()


GOOD_POOL = [
    "c1,2021-01-05,browse,,books,p1,,",
    "c1,2021-01-06,purchase,10,books,p2,o9,1",
    "c2,2021-02-01,login,,,,,",
    "c3,2021-02-10,refund,5.5,toys,p3,o3,1",
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(
        st.sampled_from([line for _, line, _ in BAD_EVENT_LINES] + GOOD_POOL),
        min_size=1,
        max_size=30,
    )
)
def test_counts_add_up_for_any_mix_of_rows(
    tmp_path_factory: pytest.TempPathFactory, picks: list[str]
) -> None:
    root = tmp_path_factory.mktemp("mix")
    events = write(
        root / "events.csv", EVENTS_HEADER + GOOD_EVENTS + "".join(p + "\n" for p in picks)
    )
    report = run_import(root, customers=DATA / "customers.csv", events=events)
    counts = report.files[1]
    assert counts.rows_read == 3 + len(picks)
    # Accepted rows are exactly the valid rows: the three good ones plus the good-pool
    # lines picked, once per distinct line with an order id (a repeat is a duplicate)
    # and every time for a line without one (identical rows are separate events).
    good = [p for p in picks if p in GOOD_POOL]
    keyed = {p for p in good if p.split(",")[6]}
    unkeyed = [p for p in good if not p.split(",")[6]]
    assert counts.accepted == 3 + len(keyed) + len(unkeyed)
    stored = FactStore(root / "facts").load_events()
    assert len(stored) == counts.accepted


PURCHASE_LOG = (
    "customer_id,occurred_at,event_type,amount,quantity\n"
    "c1,2021-01-03,purchase,25.5,1\n"
    "c1,2021-01-03,purchase,25.5,1\n"
    "c2,2021-01-06,purchase,10,2\n"
)


def test_identical_rows_without_order_id_are_separate_purchases(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", PURCHASE_LOG)
    report = run_import(tmp_path, customers=DATA / "customers.csv", events=log)
    assert report.events_added == 3
    assert report.identical_kept == 1
    assert report.quarantined_by_reason == {}
    events = FactStore(tmp_path / "facts").load_events()
    assert events.loc[events["customer_id"] == "c1", "amount"].sum() == pytest.approx(51.0)


def test_reimporting_a_purchase_log_adds_nothing_but_new_copies_are_added(
    tmp_path: Path,
) -> None:
    log = write(tmp_path / "log.csv", PURCHASE_LOG)
    run_import(tmp_path, customers=DATA / "customers.csv", events=log)
    again = run_import(tmp_path, events=log)
    assert again.events_added == 0
    assert again.quarantined_by_reason == {"duplicate": 3}
    # A later extract with a third identical purchase adds exactly that one.
    more = write(tmp_path / "more.csv", PURCHASE_LOG + "c1,2021-01-03,purchase,25.5,1\n")
    third = run_import(tmp_path, events=more)
    assert third.events_added == 1
    assert third.quarantined_by_reason == {"duplicate": 3}


def test_dedupe_exact_drops_identical_rows(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", PURCHASE_LOG)
    report = run_import(
        tmp_path,
        customers=DATA / "customers.csv",
        events=log,
        events_options=SourceOptions(dedupe="exact"),
    )
    assert report.events_added == 2
    assert report.identical_kept == 0
    assert report.quarantined_by_reason == {"duplicate": 1}
