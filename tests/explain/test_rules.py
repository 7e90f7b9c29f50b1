"""Rule traces: the trace of every standard rule tag re-evaluates to the stored value."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from explain.errors import ExplainError
from explain.rules import (
    RuleColumns,
    population_thresholds,
    trace_tag,
    trace_tags,
    window_columns,
)
from explain.trace import Clause
from features.events import prepare_events
from features.schema import events_frame
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.engine import evaluate_tag_values
from tests.explain.conftest import AS_OF, RuleProject


def _sample(snapshot: pd.DataFrame, ids: list[str], seed: int = 0) -> list[str]:
    """Customers covering every (tag, value) of the snapshot (3 each) plus 30 at random."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set(rng.choice(ids, size=min(30, len(ids)), replace=False).tolist())
    for _, rows in snapshot.groupby(["tag_id", "value"], observed=True):
        chosen |= set(rows["customer_id"].astype(str).head(3))
    return sorted(chosen)


def test_trace_re_evaluates_to_the_stored_value_of_every_standard_rule_tag(
    rule_project: RuleProject,
) -> None:
    """Oracle: the tag store (what the batch run wrote). Per-customer features from the
    customer's own facts, thresholds from the run's record."""
    project = rule_project.project
    store = project.tag_store()
    catalogue = project.catalogue()
    facts = project.fact_store()
    meta = store.run_info(AS_OF).meta or {}
    recorded = meta["thresholds"]
    stored = {
        (str(r.customer_id), str(r.tag_id)): str(r.value)
        for r in rule_project.snapshot.itertuples(index=False)
    }
    tags = catalogue.active(sources=("fact", "rule"))
    assert {"rfm_segment", "value_tier", "lifecycle_stage", "browse_churn"} <= {t.id for t in tags}
    customers = facts.load_customers()
    sample = _sample(rule_project.snapshot, customers["customer_id"].astype(str).tolist())
    checked = 0
    for cid in sample:
        one, events = facts.load_customer(cid)
        row = prepare_events(one, events).build_features(AS_OF, spec=project.feature_spec())
        if row.empty:
            continue
        for tag in tags:
            trace = trace_tag(
                catalogue.compiled(tag.id),
                row,
                thresholds=recorded.get(tag.id, {}),
                events=events,
                as_of=AS_OF,
            )
            assert trace.value == stored.get((cid, tag.id)), (cid, tag.id, trace.to_json())
            checked += 1
    assert checked >= 10 * len(tags)
    values = {(t, v) for (_, t), v in stored.items()}
    assert ("rfm_segment", "important_value") in values


def test_run_records_the_thresholds_the_population_gives(rule_project: RuleProject) -> None:
    """Parity: the run's recorded thresholds == recomputed from everyone's features."""
    project = rule_project.project
    facts = project.fact_store()
    prepared = prepare_events(facts.load_customers(), facts.load_events())
    features = prepared.build_features(AS_OF, spec=project.feature_spec())
    recorded = (project.tag_store().run_info(AS_OF).meta or {})["thresholds"]
    catalogue = project.catalogue()
    assert set(recorded) == {"rfm_segment", "value_tier"}
    for tag_id, numbers in recorded.items():
        again = population_thresholds(
            catalogue.compiled(tag_id), features, events=prepared, as_of=AS_OF
        )
        assert again.keys() == numbers.keys()
        for key, value in numbers.items():
            assert math.isclose(again[key], value, rel_tol=0, abs_tol=1e-12), key
    assert set(recorded["rfm_segment"]) == {
        "median(recency_days)",
        "median(frequency_orders)",
        "median(monetary_total)",
    }


# --------------------------------------------------------------------- hand-made frames


@pytest.fixture(scope="module")
def library() -> Catalogue:
    return Catalogue.load(LIBRARY_DIR)


def _frame(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    data = {"customer_id": [f"c{i}" for i in range(n)], **columns}
    return pd.DataFrame(data)


def _rfm_frame() -> pd.DataFrame:
    return _frame(
        recency_days=np.array([5.0, 50.0, 10.0, np.nan, 30.0], dtype="float32"),
        never_purchased=[False, False, False, True, False],
        frequency_orders=np.array([6, 1, 3, 0, 2], dtype="int32"),
        monetary_total=[900.0, 40.0, 300.0, 0.0, 120.0],
    )


def _leaves(clause: Clause) -> list[tuple[str, str, object]]:
    out = [(t.text, t.kind, t.value) for t in clause.terms]
    for child in clause.children:
        out += _leaves(child)
    return out


def test_rfm_trace_quotes_values_and_the_medians_over_buyers(library: Catalogue) -> None:
    frame = _rfm_frame()
    compiled = library.compiled("rfm_segment")
    thresholds = population_thresholds(compiled, frame)
    # Medians over the four buyers (c3 never purchased is outside the scope).
    assert thresholds == {
        "median(recency_days)": 20.0,
        "median(frequency_orders)": 2.5,
        "median(monetary_total)": 210.0,
    }
    [values] = evaluate_tag_values(frame, None, library, as_of=AS_OF, tag_ids=["rfm_segment"])
    engine = dict(zip(values.rows.tolist(), [values.values[c] for c in values.codes], strict=True))
    for i in range(len(frame)):
        trace = trace_tag(compiled, frame.iloc[[i]], thresholds=thresholds)
        assert trace.value == engine.get(i)
    first = trace_tag(compiled, frame.iloc[[0]], thresholds=thresholds)
    assert first.value == "important_value"
    assert first.in_scope
    r_high = dict(first.lets)["r_high"]
    assert r_high.op == "compare"
    assert r_high.operator == "<="
    assert r_high.result is True
    assert _leaves(r_high) == [
        ("recency_days", "feature", 5.0),
        ("median(recency_days)", "threshold", 20.0),
    ]
    matched = [c for c in first.cases if c.matched]
    assert [c.value for c in matched] == ["important_value"]
    assert first.thresholds == thresholds
    never = trace_tag(compiled, frame.iloc[[3]], thresholds=thresholds)
    assert never.value is None
    assert not never.in_scope
    assert never.scope is not None
    assert never.scope.result is False


def test_a_missing_threshold_is_refused_not_guessed_from_one_row(library: Catalogue) -> None:
    frame = _rfm_frame()
    with pytest.raises(ExplainError, match=r"median\(recency_days\)"):
        trace_tag(library.compiled("rfm_segment"), frame.iloc[[0]], thresholds={})


def test_lifecycle_cases_before_the_match_are_shown_failing(library: Catalogue) -> None:
    frame = _frame(
        never_purchased=[False],
        frequency_orders=np.array([4], dtype="int32"),
        recency_days=np.array([70.0], dtype="float32"),
        gap_mean_days=np.array([40.0], dtype="float32"),
    )
    trace = trace_tag(library.compiled("lifecycle_stage"), frame)
    assert trace.value == "dormant"
    reached = [(c.value, c.clause.result) for c in trace.cases if c.reached]
    assert reached == [("potential", False), ("new", False), ("active", False), ("dormant", True)]
    active = trace.cases[2].clause
    expression = active.terms[1]
    assert expression.kind == "expression"
    assert expression.value == 60.0
    assert [(t.text, t.value) for t in expression.inputs] == [("gap_mean_days", 40.0)]


def test_event_window_clauses_count_the_customers_events(library: Catalogue) -> None:
    events = events_frame(
        [
            {"customer_id": "c0", "occurred_at": f"2024-08-{d:02d}", "event_type": "browse"}
            for d in (12, 14, 16, 18, 20)
        ]
    )
    frame = _frame(recency_days=np.array([1.0], dtype="float32"))
    trace = trace_tag(library.compiled("browse_churn"), frame, events=events, as_of=AS_OF)
    assert trace.value == "true"
    clause = trace.cases[0].clause
    assert clause.op == "and"
    counts = [(t.text, t.kind, t.value) for c in clause.children for t in c.terms[:1]]
    assert counts == [
        ("count(browse, from 54 to 30 days ago)", "events", 5.0),
        ("count(browse, last 30 days)", "events", 0.0),
    ]


def test_fact_tag_trace_names_its_source(library: Catalogue) -> None:
    frame = _frame(age_band=pd.Categorical(["26-35"], categories=["<18", "26-35"]))
    trace = trace_tag(library.compiled("age_band"), frame)
    assert trace.value == "26-35"
    assert trace.value_clause is not None
    assert [(t.text, t.kind) for t in trace.value_clause.terms] == [("age_band", "feature")]
    assert trace.feature_names() == {"age_band"}


def test_precomputed_windows_trace_like_raw_events(rule_project: RuleProject) -> None:
    """Parity: a snapshot row with precomputed event windows (what the service holds)
    traces to the same values and counts as the customer's raw events."""
    project = rule_project.project
    facts = project.fact_store()
    catalogue = project.catalogue()
    prepared = prepare_events(facts.load_customers(), facts.load_events())
    features = prepared.build_features(AS_OF, spec=project.feature_spec())
    tags = [catalogue.compiled(t.id) for t in catalogue.active(sources=("fact", "rule"))]
    windows = window_columns(tags, features, prepared, as_of=AS_OF)
    assert "@window:count(complaint, last 90 days)" in windows.columns
    wide = pd.concat([features, windows], axis=1)
    recorded = (project.tag_store().run_info(AS_OF).meta or {})["thresholds"]
    for pos in range(0, len(features), 23):
        cid = str(features["customer_id"].iloc[pos])
        _, events = facts.load_customer(cid)
        with_events = trace_tags(tags, features.iloc[[pos]], recorded, events, AS_OF)
        from_windows = trace_tags(tags, wide.iloc[[pos]], recorded)
        assert [t.to_json() for t in from_windows] == [t.to_json() for t in with_events]


def test_rule_columns_trace_every_row_like_trace_tags(rule_project: RuleProject) -> None:
    """Parity: the service's per-snapshot converted columns (:class:`RuleColumns`) give
    the traces :func:`trace_tags` gives on the same one-row frame, for every customer,
    and leave the population's arrays untouched."""
    project = rule_project.project
    facts = project.fact_store()
    catalogue = project.catalogue()
    prepared = prepare_events(facts.load_customers(), facts.load_events())
    features = prepared.build_features(AS_OF, spec=project.feature_spec())
    tags = [catalogue.compiled(t.id) for t in catalogue.active(sources=("fact", "rule"))]
    wide = pd.concat([features, window_columns(tags, features, prepared, as_of=AS_OF)], axis=1)
    before = wide.copy()
    recorded = (project.tag_store().run_info(AS_OF).meta or {})["thresholds"]
    columns = RuleColumns(tags, wide)
    assert len(wide) > 100
    for pos in range(len(wide)):
        fast = columns.trace(tags, pos, recorded)
        slow = trace_tags(tags, wide.iloc[[pos]], recorded)
        assert [t.to_json() for t in fast] == [t.to_json() for t in slow], pos
        assert [t.value for t in fast] == [t.value for t in slow]
    # A subset of tags (a role that sees fewer) traces the same as alone.
    some = tags[::2]
    assert [t.to_json() for t in columns.trace(some, 7, recorded)] == [
        t.to_json() for t in trace_tags(some, wide.iloc[[7]], recorded)
    ]
    pd.testing.assert_frame_equal(wide, before)
