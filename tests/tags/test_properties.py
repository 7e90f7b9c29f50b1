"""Invariants of the rule language and the engine, checked with hypothesis."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.engine import evaluate_tags
from tags.errors import TagsError
from tags.rules import compile_rule, frame_kinds
from tests.tags.conftest import make_events, make_features

NUMERIC = ["recency_days", "frequency_orders", "monetary_total", "loyalty_score", "lateness"]
TOKENS = [
    *NUMERIC,
    "top_category",
    "never_purchased",
    "and",
    "or",
    "not",
    "in",
    "between",
    "is",
    "null",
    "true",
    "false",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "1",
    "0.5",
    "30",
    "'books'",
    '"x"',
    "2021-10-05",
    "count",
    "sum",
    "median",
    "quantile",
    "days_since",
    "browse",
    "purchase",
    "last",
    "from",
    "to",
    "days",
    "ago",
    "since",
    "category",
    "__import__",
    "os",
    ".",
    "system",
    "lambda",
    "[",
    "]",
    "{",
    "}",
    ":",
    "'",
    '"',
    ";",
    "\\",
    "\n",
]

FRAME = make_features(
    [
        {"recency_days": 5.0, "frequency_orders": 3.0, "top_category": "books"},
        {"recency_days": np.nan, "never_purchased": True, "frequency_orders": 0.0},
        {"recency_days": 50.0, "lateness": np.nan, "top_category": None},
    ]
)
KINDS = frame_kinds(FRAME)
EVENTS = make_events(
    [
        {
            "customer_id": "c0",
            "occurred_at": "2021-10-10",
            "event_type": "browse",
            "category": "books",
        },
        {"customer_id": "c2", "occurred_at": "2021-11-01", "event_type": "purchase"},
    ]
)


@contextlib.contextmanager
def no_eval() -> Iterator[None]:
    """Make eval/exec impossible while rule text is compiled and evaluated."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("rule text reached eval/exec")

    saved = builtins.eval, builtins.exec
    builtins.eval, builtins.exec = refuse, refuse
    try:
        yield
    finally:
        builtins.eval, builtins.exec = saved


def _compile_and_run(text: str) -> None:
    with contextlib.suppress(TagsError), no_eval():
        rule = compile_rule(text, names=KINDS, event_types=["browse", "purchase"])
        from tags.rules import EvalContext, Scope

        rule.evaluate(Scope(EvalContext(FRAME, events=EVENTS, as_of="2021-12-01")))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.text(max_size=120))
def test_random_text_gives_own_error_or_rule(text: str) -> None:
    _compile_and_run(text)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_random_token_soup_gives_own_error_or_rule(text: str) -> None:
    _compile_and_run(text)


def test_code_injection_is_just_an_error(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for text in (
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w')",
        "recency_days.__class__",
        "[x for x in ()]",
        "(" * 10_000,
        "x" * 10_000,
    ):
        with pytest.raises(TagsError), no_eval():
            compile_rule(text, names=KINDS)
    assert not marker.exists()


# A small generator of valid conditions over the numeric features.
_atoms = (
    st.builds(
        lambda f, op, v: f"{f} {op} {v}",
        st.sampled_from(NUMERIC),
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(
            ["0", "1", "3", "10", "0.5", "median(recency_days)", "quantile(monetary_total, 0.7)"]
        ),
    )
    | st.builds(lambda f: f"{f} is null", st.sampled_from(NUMERIC))
    | st.just("never_purchased")
)
conditions = st.recursive(
    _atoms,
    lambda inner: (
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner)
        | st.builds(lambda a, b: f"({a}) or ({b})", inner, inner)
        | st.builds(lambda a: f"not ({a})", inner)
    ),
    max_leaves=6,
)

feature_rows = st.lists(
    st.fixed_dictionaries(
        {
            "recency_days": st.one_of(st.none(), st.floats(0, 400)),
            "frequency_orders": st.integers(0, 12).map(float),
            "monetary_total": st.floats(0, 5000),
            "loyalty_score": st.floats(0, 1),
            "lateness": st.one_of(st.none(), st.floats(0, 10)),
        }
    ),
    min_size=1,
    max_size=40,
)


def _ordinal(cases: list[str], values: list[str], scope: str | None) -> TagDefinition:
    return TagDefinition.model_validate(
        {
            "id": "generated",
            "display_name": "behaviour_generated",
            "category": "behaviour",
            "description": "Generated by hypothesis.",
            "owner": "tests",
            "source": "rule",
            "value_type": "ordinal",
            "values": values,
            "status": "active",
            "rule": {
                **({"scope": scope} if scope else {}),
                "cases": [
                    {"value": values[i % len(values)], "when": c} for i, c in enumerate(cases)
                ],
                "else": values[-1],
            },
        }
    )


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    prepared = [{k: (np.nan if v is None else v) for k, v in r.items()} for r in rows]
    return make_features(prepared)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=feature_rows,
    cases=st.lists(conditions, min_size=1, max_size=4),
    scope=st.one_of(st.none(), conditions),
    boolean=conditions,
)
def test_engine_emits_only_catalogued_tags_and_one_value_per_customer(
    rows: list[dict[str, Any]], cases: list[str], scope: str | None, boolean: str
) -> None:
    values = ["high", "medium", "low"]
    flag = TagDefinition.model_validate(
        {
            "id": "generated_flag",
            "display_name": "behaviour_generated flag",
            "category": "behaviour",
            "description": "Generated by hypothesis.",
            "owner": "tests",
            "source": "rule",
            "value_type": "boolean",
            "status": "active",
            "rule": boolean,
        }
    )
    catalogue = Catalogue.from_definitions([_ordinal(cases, values, scope), flag])
    frame = _frame(rows)
    out = evaluate_tags(frame, None, catalogue, as_of="2024-01-01")
    assert set(out["tag_id"]) <= set(catalogue.tags)
    ordinal = out[out["tag_id"] == "generated"]
    assert set(ordinal["value"]) <= set(values)
    assert not ordinal["customer_id"].duplicated().any()
    if scope is None:
        # No scope: every customer gets exactly one value (the else catches the rest).
        assert sorted(ordinal["customer_id"]) == sorted(frame["customer_id"])
    else:
        in_scope = compile_rule(scope).mask(frame)
        assert set(ordinal["customer_id"]) == set(frame["customer_id"][in_scope])
    flags = out[out["tag_id"] == "generated_flag"]
    assert set(flags["value"]) <= {"true"}
    expected = compile_rule(boolean).mask(frame)
    assert set(flags["customer_id"]) == set(frame["customer_id"][expected])
