"""Rule tags of a few rows as compiled closures (``tags.rule_rows``): the same rows,
values and thresholds as the vectorised interpreter, for the standard library's tags and
for generated rules over every column kind, float32 precision, nulls and NaN constants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tags.engine
import tags.rule_arrays as rule_arrays
from features.families.base import Coded
from scoring.live import LiveScorer
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.definitions import TagDefinition
from tags.errors import TagsError
from tags.rule_arrays import ArrayRules
from tags.rule_rows import RowEnv, row_tag
from tags.rules import ast, compile_rule
from tags.rules.context import EvalContext
from tags.rules.prepared import PreparedEventIndex

AS_OF = pd.Timestamp("2024-09-01", tz="UTC")
_DAY = pd.Timedelta(days=1)
_AGES = [0.25, 0.5, 1, 7, 29, 30, 31, 53, 54, 55, 89, 90, 91, 95, 120]


def _outcome(
    rules: ArrayRules,
    arrays: dict[str, Any],
    index: Any,
    codes: np.ndarray,
    limit: int,
    thresholds: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Each tag's (rows, codes, values, thresholds) with the closures (``limit`` >= n)
    or the interpreter (``limit`` -1); an error as its type and message."""
    with monkeypatch.context() as m:
        m.setattr(rule_arrays, "ROW_LIMIT", limit)
        try:
            found = rules.evaluate(
                arrays, len(codes), index, codes, as_of=AS_OF, thresholds=thresholds
            )
        except TagsError as exc:
            return (type(exc).__name__, str(exc))
    return [
        (
            t.tag_id,
            t.rows.tolist(),
            t.rows.dtype.str,
            t.codes.tolist(),
            t.codes.dtype.str,
            t.values,
            repr(t.thresholds),
        )
        for t in found
    ]


def _events(ids: list[str], draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for cid in ids:
        for k in range(draw(st.integers(0, 6))):
            out.append(
                {
                    "customer_id": cid,
                    # Days at and beside the windows' edges (30, 54, 90 days ago).
                    "occurred_at": AS_OF - draw(st.sampled_from(_AGES)) * _DAY,
                    "event_type": draw(st.sampled_from(["browse", "purchase", "complaint"])),
                    "amount": float(draw(st.integers(1, 200))),
                    "category": draw(st.sampled_from(["a", "b", "c"])),
                    "order_id": f"{cid}-{k}",
                }
            )
    return out


def _index(n: int, draw: st.DrawFn) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """A real event index of ``n`` customers and their feature arrays."""
    ids = [f"c{k}" for k in range(n)]
    customers = [{"customer_id": c, "signup_at": AS_OF - 400 * _DAY} for c in ids]
    index, columns = LiveScorer().columns(customers, _events(ids, draw), as_of=AS_OF)
    return index, columns.codes, {"customer_id": columns.customer_ids} | columns.columns


# ------------------------------------------------------------------ the library's tags


@pytest.fixture(scope="module")
def library() -> Catalogue:
    return Catalogue.load(LIBRARY_DIR)


def test_every_library_tag_compiles_to_closures(library: Catalogue) -> None:
    scorer = LiveScorer(catalogue=library)
    rules = scorer._rules
    assert rules is not None
    compiled = rules.compiled()
    assert compiled
    assert all(row_tag(c, rules._row_kinds) is not None for c in compiled)


def test_a_one_customer_call_does_not_run_the_interpreter(
    library: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("evaluate_tag called")

    scorer = LiveScorer(catalogue=library)
    customer = {"customer_id": "c1", "signup_at": AS_OF - 300 * _DAY}
    event = {
        "customer_id": "c1",
        "occurred_at": AS_OF - 3 * _DAY,
        "event_type": "purchase",
        "amount": 20.0,
        "order_id": "o1",
        "category": "a",
    }
    expected = scorer.score([customer], [event], as_of=AS_OF).rule_tags
    monkeypatch.setattr(rule_arrays, "evaluate_tag", refuse)
    monkeypatch.setattr(tags.engine, "evaluate_tag", refuse)
    got = scorer.score([customer], [event], as_of=AS_OF).rule_tags
    pd.testing.assert_frame_equal(got, expected)
    assert len(got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 6), pinned=st.booleans())
def test_library_tags_as_the_interpreter(
    library: Catalogue, data: st.DataObject, n: int, pinned: bool
) -> None:
    scorer = LiveScorer(catalogue=library)
    rules = scorer._rules
    assert rules is not None
    index, codes, arrays = _index(n, data.draw)
    thresholds = None
    if pinned:
        thresholds = {
            "rfm_segment": {"median(recency_days)": 20.0, "median(frequency_orders)": 2.0},
            "value_tier": {"quantile(monetary_total, 0.8)": float("nan")},
        }
    with pytest.MonkeyPatch.context() as mp:
        closures = _outcome(rules, arrays, index, codes, 8, thresholds, mp)
        interpreted = _outcome(rules, arrays, index, codes, -1, thresholds, mp)
    assert closures == interpreted


# ------------------------------------------------------------------ generated rules

_FLOATS = [0.0, -0.0, 0.7, 0.5, 1.0, 2.0, -3.25, 1e-30, 3.3e38, 1e39, np.nan, np.inf]
_NUM_ATOMS = [
    "x32",
    "y32",
    "x64",
    "i32",
    "0.7",
    "0",
    "2",
    "-1.5",
    "1e39",
    "median(x64)",
    "quantile(x32, 0.5)",
    "max(y32)",
    "count(browse, last 30 days)",
    "sum(purchase, last 90 days)",
    "days_since(purchase)",
    'count(purchase, category in ("a", "b"))',
    "days_since(browse, from 54 to 30 days ago)",
    "count(browse, last 0.5 days)",
    "sum(purchase)",
    "count(login, last 7 days)",
    "days_since(complaint, since 2024-06-01)",
]


def _numbers() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda a: f"abs({a})"),
            inner.map(lambda a: f"round({a}, 1)"),
            inner.map(lambda a: f"round({a})"),
            st.tuples(
                st.sampled_from(["least", "greatest"]), st.lists(inner, min_size=2, max_size=3)
            ).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
            inner.map(lambda a: f"(null + {a})"),
        )

    return st.recursive(st.sampled_from(_NUM_ATOMS), extend, max_leaves=5)


def _conditions() -> st.SearchStrategy[str]:
    num = _numbers()
    compare = st.tuples(num, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), num).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}"
    )
    atoms = st.one_of(
        compare,
        st.sampled_from(
            [
                "flag",
                "true",
                "false",
                'cat = "a"',
                'cat != "b"',
                'cat < "b"',
                'cat in ("a", "c")',
                'cat not in ("a")',
                'txt = "a"',
                'txt >= "b"',
                "txt = cat",
                "cat is null",
                "txt is not null",
                'txt in ("a", "b")',
                "x32 in (0.7, 2)",
                "x64 not in (0.7, 1)",
                "flag in (true)",
                'category_name = "c"',
                # float32 arithmetic is rounded to float32 (0.7 * 3 is 2.0999999046...).
                "x32 * 3 = 2.0999999046325684",
                "x32 + 0.1 = 0.800000011920929",
                "x32 / 3 >= 0.23333333432674408",
                "y32 - 0.1 >= 0.5999999642372131",
                "x32 * y32 > 0.48999998",
            ]
        ),
        num.map(lambda a: f"{a} is null"),
        num.map(lambda a: f"{a} is not null"),
        st.tuples(num, num, num, st.booleans()).map(
            lambda t: f"{t[0]} {'not ' if t[3] else ''}between {t[1]} and {t[2]}"
        ),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            inner.map(lambda a: f"not ({a})"),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}) = ({t[1]})"),
            inner.map(lambda a: f"(null or {a})"),
        )

    return st.recursive(atoms, extend, max_leaves=4)


def _tag(tag_id: str, rule: Any, **extra: Any) -> TagDefinition:
    return TagDefinition.model_validate(
        {
            "id": tag_id,
            "display_name": f"behaviour_{tag_id}",
            "category": "behaviour",
            "description": "Generated.",
            "owner": "tests",
            "source": "rule",
            "status": "active",
            "rule": rule,
            **extra,
        }
    )


def _columns(n: int, draw: st.DrawFn) -> dict[str, Any]:
    floats = st.lists(st.sampled_from(_FLOATS), min_size=n, max_size=n)
    words = st.lists(st.sampled_from([None, "a", "b", "c", "a\x00"]), min_size=n, max_size=n)
    codes = draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
    return {
        "x32": np.array(draw(floats), dtype=np.float32),
        "y32": np.array(draw(floats), dtype=np.float32),
        "x64": np.array(draw(floats), dtype=np.float64),
        "i32": np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), np.int32),
        "flag": np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "cat": Coded(np.array(codes, dtype=np.int8), pd.Index(["a", "b", "c"])),
        "category_name": Coded(np.array(codes[::-1], dtype=np.int8), pd.Index(["c", "a", "b"])),
        "txt": pa.array(draw(words), pa.string()),
    }


_KINDS = {
    "customer_id": "string",
    "x32": np.dtype("float32"),
    "y32": np.dtype("float32"),
    "x64": np.dtype("float64"),
    "i32": np.dtype("int32"),
    "flag": np.dtype("bool"),
    "cat": pd.CategoricalDtype(),
    "category_name": pd.CategoricalDtype(),
    "txt": "string",
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 6),
    when=_conditions(),
    scope=st.one_of(st.none(), _conditions()),
    let=_numbers(),
    cases=st.lists(_conditions(), min_size=1, max_size=3),
    pinned=st.sampled_from([None, 1.5, float("nan")]),
)
def test_generated_rules_as_the_interpreter(
    data: st.DataObject,
    n: int,
    when: str,
    scope: str | None,
    let: str,
    cases: list[str],
    pinned: float | None,
) -> None:
    index, codes, arrays = _index(n, data.draw)
    arrays |= _columns(n, data.draw)
    scoped = {"scope": scope} if scope else {}
    definitions = [
        _tag("flagged", when, value_type="boolean"),
        _tag(
            "graded",
            {
                **scoped,
                "let": {"v": let},
                "cases": [
                    {"value": "abc"[k], "when": c.replace("x64", "v")} for k, c in enumerate(cases)
                ],
                "else": "z",
            },
            value_type="ordinal",
            values=["a", "b", "c", "z"],
        ),
        _tag("valued", {**scoped, "value": "cat"}, value_type="ordinal", open_values=True),
        _tag("closed", {"value": "txt"}, value_type="ordinal", values=["a", "b"]),
    ]
    catalogue = Catalogue.from_definitions(definitions)
    thresholds = None
    if pinned is not None:
        aggregates = ("median(x64)", "quantile(x32, 0.5)", "max(y32)")
        thresholds = {t.id: dict.fromkeys(aggregates, pinned) for t in definitions}
    for tag_ids in (["flagged"], ["graded"], ["valued"], ["closed"]):
        selected = ArrayRules(catalogue, _KINDS, tag_ids)
        (compiled,) = selected.compiled()
        # Only an aggregate of a let name ('median(v)') is left to the interpreter.
        covered = "median(v)" not in str([r.text for r in compiled.rules()])
        assert (row_tag(compiled, selected._row_kinds) is not None) == covered
        with pytest.MonkeyPatch.context() as mp:
            closures = _outcome(selected, arrays, index, codes, 8, thresholds, mp)
            interpreted = _outcome(selected, arrays, index, codes, -1, thresholds, mp)
        assert closures == interpreted, (tag_ids, when, scope, let, cases)


_WINDOWS = [
    "",
    ", last 30 days",
    ", last 0.5 days",
    ", from 54 to 30 days ago",
    ", from 91 to 90 days ago",
    ", since 2024-06-01",
    ", from 2024-05-03 to 2024-08-02",
    ", since 2025-01-01",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 6))
def test_row_windows_are_the_index_aggregates(data: st.DataObject, n: int) -> None:
    index, codes, arrays = _index(n, data.draw)
    ctx = EvalContext(pd.DataFrame(), as_of=AS_OF)
    env = RowEnv(n, arrays, ctx, index, codes)
    vectorised = PreparedEventIndex(index, codes, int(AS_OF.value), codes=codes)
    for func in ("count", "sum", "days_since"):
        for event_type in ("browse", "purchase", "complaint", "login"):
            for text in _WINDOWS:
                (call,) = compile_rule(f"{func}({event_type}{text}) > 0").event_calls
                window = next((a for a in call.args if isinstance(a, ast.Window)), None)
                expected = vectorised.aggregate(func, event_type, window, None).tolist()
                got = env.window(func, event_type, window)
                assert repr(got) == repr(expected), (func, event_type, text)
