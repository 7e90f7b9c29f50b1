"""The rule language: parsing, errors, and vectorised semantics on hand-checked frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tags.errors import RuleNameError, RuleSyntaxError, RuleTypeError, TagsError
from tags.rules import compile_rule, frame_kinds
from tests.tags.conftest import make_events

FRAME = pd.DataFrame(
    {
        "customer_id": pd.Series(["a", "b", "c", "d"], dtype="string"),
        "x": [1.0, 5.0, np.nan, 10.0],
        "y": [2.0, 0.0, 3.0, np.nan],
        "flag": [True, False, True, False],
        "city": pd.Series(["北京", "shanghai", None, "北京"], dtype="string"),
        "signup": pd.to_datetime(["2021-01-01", "2021-06-01", None, "2022-01-01"], utc=True),
    }
)
KINDS = frame_kinds(FRAME)


def mask(text: str, **kwargs: object) -> list[bool]:
    return compile_rule(text, names=KINDS).mask(FRAME, **kwargs).tolist()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x > 2", [False, True, False, True]),
        ("x >= 5 and y = 0", [False, True, False, False]),
        ("x < 2 or y > 2", [True, False, True, False]),
        ("x + y > 5", [False, False, False, False]),
        ("x * 2 - 1 = 9", [False, True, False, False]),
        ("x / y > 1", [False, False, False, False]),  # 5/0 is null, not infinity
        ("x % 2 = 1", [True, True, False, False]),
        ("-x < -4", [False, True, False, True]),
        ("x between 1 and 5", [True, True, False, False]),
        ("x not between 1 and 5", [False, False, False, True]),
        ("x in (1, 10)", [True, False, False, True]),
        ("x not in (1, 10)", [False, True, False, False]),
        ("x is null", [False, False, True, False]),
        ("x is not null", [True, True, False, True]),
        ("flag", [True, False, True, False]),
        ("not flag", [False, True, False, True]),
        ("flag = true", [True, False, True, False]),
        ("city = '北京'", [True, False, False, True]),
        ('city != "北京"', [False, True, False, False]),
        ('city in ("shanghai", "x")', [False, True, False, False]),
        ("city is null", [False, False, True, False]),
        ("signup < 2021-12-31", [True, True, False, False]),
        ("signup between 2021-06-01 and 2022-01-01", [False, True, False, True]),
        ("abs(0 - x) = 5", [False, True, False, False]),
        ("coalesce(x, 0) = 0", [False, False, True, False]),
        ("greatest(x, y) >= 3", [False, True, True, True]),
        ("least(x, y) <= 1", [True, True, False, False]),
        ("round(x / 3) = 2", [False, True, False, False]),
        ("x >= median(x)", [False, True, False, True]),
        ("x > mean(x)", [False, False, False, True]),
        ("x >= quantile(x, 0.5)", [False, True, False, True]),
        ("x = min(x) or x = max(x)", [True, False, False, True]),
        ("(signup - 2021-01-01) > 100", [False, True, False, True]),
        ("x > 2 AND NOT flag", [False, True, False, True]),
    ],
)
def test_semantics_on_hand_checked_frame(text: str, expected: list[bool]) -> None:
    assert mask(text) == expected


def test_null_logic_is_three_valued() -> None:
    # c has x null: 'x > 2' is unknown, so 'not (x > 2)' is unknown too (not true).
    assert mask("not (x > 2)") == [True, False, False, False]
    # unknown or true = true; unknown and false = false
    assert mask("x > 2 or flag") == [True, True, True, True]
    assert mask("not (x > 2 and not flag)") == [True, False, True, False]


def test_aggregates_follow_the_population() -> None:
    rule = compile_rule("x >= median(x)", names=KINDS)
    everyone = rule.mask(FRAME).tolist()
    # median over rows a and b only is 3: d (10) passes, b (5) passes, a (1) does not.
    only_ab = rule.mask(FRAME, population=np.array([True, True, False, False])).tolist()
    assert everyone == [False, True, False, True]
    assert only_ab == [False, True, False, True]
    low = compile_rule("x <= median(x)", names=KINDS)
    assert low.mask(FRAME, population=np.array([True, True, False, False])).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_matches_naive_loop_for_windows() -> None:
    events = make_events(
        [
            *[{"customer_id": "a", "occurred_at": "2021-10-06", "event_type": "browse"}] * 5,
            {"customer_id": "b", "occurred_at": "2021-10-10", "event_type": "browse"},
            *[{"customer_id": "b", "occurred_at": "2021-10-20", "event_type": "browse"}] * 4,
            {"customer_id": "b", "occurred_at": "2021-11-01", "event_type": "browse"},
            {"customer_id": "c", "occurred_at": "2021-10-28", "event_type": "browse"},
            {"customer_id": "d", "occurred_at": "2021-12-02", "event_type": "browse"},
            {
                "customer_id": "a",
                "occurred_at": "2021-11-20",
                "event_type": "purchase",
                "amount": 30.0,
                "category": "shoes",
            },
            {
                "customer_id": "a",
                "occurred_at": "2021-11-25",
                "event_type": "purchase",
                "amount": 12.5,
                "category": "books",
            },
            {
                "customer_id": "zz",
                "occurred_at": "2021-11-25",
                "event_type": "purchase",
                "amount": 99.0,
            },
        ]
    )
    as_of = "2021-12-01"
    classic = (
        "count(browse, from 2021-10-05 to 2021-10-28) > 4 and "
        "count(browse, from 2021-10-28 to 2021-11-28) = 0"
    )
    # a: 5 early, 0 late -> true; b: 5 early but 1 late -> false; c: the 10-28 browse
    # falls in the second window (half-open [start, end)); d: after as_of, unseen.
    assert mask(classic, events=events, as_of=as_of) == [True, False, False, False]

    def naive(customer: str, etype: str, lo: str | None, hi: str, field: str) -> float:
        total = 0.0
        for row in events.itertuples():
            if row.customer_id != customer or row.event_type != etype:
                continue
            t = row.occurred_at
            if (lo is None or t >= pd.Timestamp(lo, tz="UTC")) and t < pd.Timestamp(hi, tz="UTC"):
                total += 1 if field == "count" else row.amount
        return total

    rule = compile_rule("sum(purchase, last 30 days)", names=KINDS)
    from tags.rules import EvalContext, Scope

    value = rule.evaluate(Scope(EvalContext(FRAME, events=events, as_of=as_of)))
    expected = [naive(c, "purchase", "2021-11-01", as_of, "sum") for c in "abcd"]
    assert value.data.tolist() == expected == [42.5, 0.0, 0.0, 0.0]
    ago = compile_rule("count(browse, from 54 to 30 days ago)", names=KINDS)
    value = ago.evaluate(Scope(EvalContext(FRAME, events=events, as_of=as_of)))
    expected = [naive(c, "browse", "2021-10-08", "2021-11-01", "count") for c in "abcd"]
    assert value.data.tolist() == expected == [0.0, 5.0, 1.0, 0.0]
    assert mask('count(purchase, category = "shoes") = 1', events=events, as_of=as_of) == [
        True,
        False,
        False,
        False,
    ]
    assert mask(
        'sum(purchase, category in ("shoes", "books"), since 2021-11-21) = 12.5',
        events=events,
        as_of=as_of,
    ) == [True, False, False, False]
    assert mask("days_since(browse) between 30 and 31", events=events, as_of=as_of) == [
        False,
        True,
        False,
        False,
    ]
    assert mask("days_since(browse, last 2 weeks) is null", events=events, as_of=as_of) == [
        True,
        True,
        True,
        True,
    ]


def test_windows_never_read_events_at_or_after_as_of() -> None:
    events = make_events(
        [
            {"customer_id": "a", "occurred_at": "2021-12-01T00:00:00", "event_type": "login"},
            {"customer_id": "a", "occurred_at": "2021-11-30T23:59:59", "event_type": "login"},
        ]
    )
    assert mask("count(login, since 2021-01-01) = 1", events=events, as_of="2021-12-01") == [
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("text", "error", "column", "fragment"),
    [
        ("recency > 3", RuleNameError, 1, "Did you mean 'recency_days'?"),
        ("recency_days > 3 and frequncy_orders >= 1", RuleNameError, 22, "'frequency_orders'"),
        ("count(brows, last 3 days) > 1", RuleNameError, 7, "Did you mean 'browse'?"),
        ("medain(recency_days) > 1", RuleNameError, 1, "'median'"),
        ("recency_days >> 3", RuleSyntaxError, 15, "Got '>'"),
        ("recency_days > 3 and", RuleSyntaxError, None, "ends too early"),
        ("recency_days $ 3", RuleSyntaxError, 14, "Unexpected character '$'"),
        ("count(browse, from 10 to 30 days ago) > 1", RuleSyntaxError, 15, "further back"),
        ("count(browse, from 2021-11-01 to 2021-10-01) > 1", RuleSyntaxError, 15, "forward"),
        ("recency_days > 2021-02-30", RuleSyntaxError, 16, "not a valid date"),
        ("recency_days > 'x'", RuleTypeError, 1, "Cannot compare a number with a string"),
        ("recency_days = null", RuleTypeError, 1, "is null"),
        ("recency_days and 1", RuleTypeError, 1, "'and' needs a true/false value"),
        ("quantile(recency_days, 2) > 1", RuleSyntaxError, 24, "between 0 and 1"),
        ("median(median(recency_days)) > 1", RuleSyntaxError, 8, "cannot nest"),
        ("last 30 days", RuleSyntaxError, 6, "Got '30'"),
        ("count(recency_days + 1) > 2", RuleSyntaxError, 7, "event type"),
    ],
)
def test_errors_quote_the_rule_and_point_at_the_column(
    text: str, error: type[TagsError], column: int | None, fragment: str
) -> None:
    kinds = {"recency_days": "num", "frequency_orders": "num"}
    with pytest.raises(error) as info:
        compile_rule(
            text,
            names=kinds,
            event_types=["browse", "purchase"],
            where="catalogue/x.yaml: tag 'demo'",
            expect="bool",
        )
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0].startswith("catalogue/x.yaml: tag 'demo'")
    assert fragment in message
    assert lines[1] == f"  {text}"
    if column is not None:
        assert lines[2].index("^") - 2 == column - 1, message


def test_result_must_be_a_condition_where_one_is_expected() -> None:
    with pytest.raises(RuleTypeError, match="Expected a condition"):
        compile_rule("recency_days + 1", names={"recency_days": "num"}, expect="bool")


def test_events_and_aggregates_can_be_switched_off_for_audiences() -> None:
    with pytest.raises(RuleSyntaxError, match="raw events"):
        compile_rule("count(browse) > 1", allow_events=False)
    with pytest.raises(RuleSyntaxError, match="not available"):
        compile_rule("x > median(x)", allow_aggregates=False)


def test_window_needs_events_at_evaluation() -> None:
    rule = compile_rule("count(browse, last 3 days) > 1", names=KINDS)
    with pytest.raises(TagsError, match="needs events and an as_of"):
        rule.mask(FRAME)


def test_string_ordering_and_column_comparisons() -> None:
    frame = pd.DataFrame(
        {
            "a": pd.Series(["x", "y", None], dtype="string"),
            "b": pd.Series(["x", "z", "q"], dtype="category"),
        }
    )
    kinds = frame_kinds(frame)
    assert compile_rule("a = b", names=kinds).mask(frame).tolist() == [True, False, False]
    assert compile_rule("a < b", names=kinds).mask(frame).tolist() == [False, True, False]
    assert compile_rule("b >= 'r'", names=kinds).mask(frame).tolist() == [True, True, False]
