"""Event windows from PreparedEvents: the same numbers as the raw-events path and a
naive loop, for any window, filter and frame; and the long table built from codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.events import prepare_events
from features.schema import customers_frame
from tags.catalogue import Catalogue
from tags.engine import concat_tag_tables, evaluate_tags
from tags.rules import EventIndex, ast
from tags.rules.prepared import PreparedEventIndex
from tags.rules.windows import DAY_NS, to_ns, window_bounds
from tags.store import TagStore
from tags.store_format import TAG_COLUMNS
from tests.tags.conftest import make_events

BASE = pd.Timestamp("2024-01-01", tz="UTC")
TYPES = ["browse", "purchase", "login"]
CATEGORIES = ["books", "shoes", "toys", None]
IDS = [f"c{i}" for i in range(6)]


def _naive(
    events: pd.DataFrame,
    customer: str,
    func: str,
    event_type: str,
    lo: int,
    hi: int,
    categories: tuple[str, ...] | None,
    as_of_ns: int,
) -> float:
    """One customer, one window, by a plain loop over the rows."""
    count, total, latest = 0, 0.0, None
    for row in events.itertuples():
        t = to_ns(row.occurred_at)
        if row.customer_id != customer or row.event_type != event_type:
            continue
        if not (lo <= t < min(hi, as_of_ns)):
            continue
        if categories is not None and (pd.isna(row.category) or row.category not in categories):
            continue
        count += 1
        total += 0.0 if pd.isna(row.amount) else round(row.amount * 10_000)
        latest = t if latest is None else max(latest, t)
    if func == "count":
        return float(count)
    if func == "sum":
        return total / 10_000
    return np.nan if latest is None else (as_of_ns - latest) / DAY_NS


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    n_events = draw(st.integers(0, 40))
    events = []
    for _ in range(n_events):
        # Whole seconds mostly, sometimes a fraction: both bound paths get exercised.
        seconds = draw(st.integers(0, 60 * 86_400))
        micros = draw(st.sampled_from([0, 0, 250_000, 999_999]))
        events.append(
            {
                "customer_id": draw(st.sampled_from([*IDS, "stranger"])),
                "occurred_at": BASE + pd.Timedelta(seconds=seconds, microseconds=micros),
                "event_type": draw(st.sampled_from(TYPES)),
                "amount": draw(st.sampled_from([1.1, 2.25, 10.0, 0.3, np.nan])),
                "category": draw(st.sampled_from(CATEGORIES)),
            }
        )
    signups = {i: BASE + pd.Timedelta(days=draw(st.integers(-5, 50))) for i in IDS}
    as_of = BASE + pd.Timedelta(
        seconds=draw(st.integers(0, 60 * 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 500_000])),
    )
    kind = draw(st.sampled_from(["none", "relative", "absolute"]))
    window: ast.Window | None = None
    if kind == "relative":
        start = draw(st.sampled_from([1, 7, 10.5, 30, 90]))
        end = draw(st.sampled_from([None, 0, 0.25, 1, 5]))
        if end is not None and end >= start:
            end = None
        window = ast.Window("relative", start, end)
    elif kind == "absolute":
        a = draw(st.integers(-3, 70))
        b = draw(st.one_of(st.none(), st.integers(a + 1, 75)))
        window = ast.Window(
            "absolute",
            to_ns(BASE + pd.Timedelta(days=a)),
            None if b is None else to_ns(BASE + pd.Timedelta(days=b)),
        )
    return {
        "events": events,
        "signups": signups,
        "as_of": as_of,
        "window": window,
        "func": draw(st.sampled_from(["count", "sum", "days_since"])),
        "event_type": draw(st.sampled_from([*TYPES, "refund"])),
        "categories": draw(st.sampled_from([None, ("books",), ("shoes", "toys"), ("none",)])),
        "frame": draw(st.sampled_from(["built", "shuffled"])),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_prepared_windows_match_raw_path_and_naive_loop(case: dict[str, Any]) -> None:
    events = make_events(case["events"])
    customers = customers_frame(
        [{"customer_id": i, "signup_at": t} for i, t in case["signups"].items()]
    )
    prepared = prepare_events(customers, events)
    as_of_ns = to_ns(case["as_of"])
    signed = sorted(i for i, t in case["signups"].items() if to_ns(t) < as_of_ns)
    # "built": what build_features(as_of) gives (matched without hashing); any other
    # frame (another order, a customer the events never saw) is matched by hashing.
    ids = signed if case["frame"] == "built" else [*reversed(IDS), "newcomer"]
    ids_series = pd.Series(ids, dtype="string")
    fast = PreparedEventIndex(prepared, ids_series, as_of_ns)
    raw = EventIndex(events, ids_series, as_of_ns)
    args = (case["func"], case["event_type"], case["window"], case["categories"])
    got = fast.aggregate(*args)
    want = raw.aggregate(*args)
    np.testing.assert_array_equal(got, want)
    lo, hi = window_bounds(case["window"], as_of_ns)
    naive = [
        _naive(events, c, case["func"], case["event_type"], lo, hi, case["categories"], as_of_ns)
        for c in ids
    ]
    np.testing.assert_allclose(got, naive, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def facts() -> tuple[pd.DataFrame, pd.DataFrame]:
    from synthetic import generate

    data = generate(400, start="2023-06-01", end="2024-06-01", seed=11)
    return data.customers, data.events


WINDOW_RULES = {
    "w_recent_buyer": "count(purchase, last 30 days) >= 1",
    "w_spend_shift": "sum(purchase, from 90 to 30 days ago) > 50 and "
    "count(purchase, last 30 days) = 0",
    "w_browse_gap": "days_since(browse, last 90 days) > 20",
    "w_classic": "count(browse, from 2024-03-01 to 2024-04-15) > 4 and "
    "count(browse, from 2024-04-15 to 2024-05-20) = 0",
}


def _catalogue(library: Catalogue, top: str) -> Catalogue:
    from tags.definitions import TagDefinition

    extra = [
        TagDefinition.model_validate(
            {
                "id": tag_id,
                "display_name": f"behaviour_{tag_id}",
                "category": "behaviour",
                "description": "window test",
                "owner": "tests",
                "source": "rule",
                "value_type": "boolean",
                "status": "active",
                "rule": rule,
            }
        )
        for tag_id, rule in {
            **WINDOW_RULES,
            "w_category": f'count(purchase, category = "{top}", last 60 days) >= 1',
        }.items()
    ]
    return Catalogue.from_definitions(
        [*library, *extra], event_types=["purchase", "refund", "browse", "login", "complaint"]
    )


def test_engine_gives_the_same_table_from_prepared_or_raw_events(
    facts: tuple[pd.DataFrame, pd.DataFrame], library: Catalogue
) -> None:
    customers, events = facts
    as_of = pd.Timestamp("2024-06-01", tz="UTC")
    prepared = prepare_events(customers, events)
    features = prepared.build_features(as_of)
    top = str(features["top_category"].dropna().iloc[0])
    catalogue = _catalogue(library, top)
    fast = evaluate_tags(features, prepared, catalogue, as_of=as_of)
    slow = evaluate_tags(features, events, catalogue, as_of=as_of)
    pd.testing.assert_frame_equal(fast, slow)
    # Every window tag fires for someone and not for everyone: the test can fail.
    sizes = fast.groupby("tag_id", observed=True).size()
    for tag_id in [*WINDOW_RULES, "w_category"]:
        assert 0 < sizes.get(tag_id, 0) < len(features), tag_id
    # A frame that is not the one built from the prepared events (reordered, one
    # customer dropped) gets the same rows for the customers it has.
    other = features.iloc[::-1].iloc[1:].reset_index(drop=True)
    shuffled = evaluate_tags(other, prepared, catalogue, as_of=as_of)
    key = ["tag_id", "customer_id", "value"]
    dropped = features["customer_id"].iloc[-1]
    expect = fast[fast["customer_id"] != dropped][key].astype(str)
    got = shuffled[key].astype(str)
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True), expect.sort_values(key, ignore_index=True)
    )


def test_categorical_table_round_trips_through_the_store(
    facts: tuple[pd.DataFrame, pd.DataFrame], library: Catalogue, tmp_path: Any
) -> None:
    customers, events = facts
    as_of = pd.Timestamp("2024-06-01", tz="UTC")
    prepared = prepare_events(customers, events)
    features = prepared.build_features(as_of)
    rules = evaluate_tags(features, prepared, library, as_of=as_of)
    predicted = pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype("string"),
            "tag_id": pd.array(["churn_risk"] * len(features), dtype="string"),
            "value": pd.array(["high"] * len(features), dtype="string"),
            "score": np.linspace(0, 1, len(features)),
            "source": pd.array(["model"] * len(features), dtype="string"),
            "version": pd.array(["churn-predictor/3"] * len(features), dtype="string"),
            "as_of": as_of,
        }
    )
    both = concat_tag_tables([rules, predicted])
    assert tuple(both.columns) == TAG_COLUMNS
    assert len(both) == len(rules) + len(predicted)
    for name in ("customer_id", "tag_id", "value", "source", "version"):
        assert isinstance(both[name].dtype, pd.CategoricalDtype), name
    store = TagStore(tmp_path / "tags.duckdb")
    store.write_snapshot(both, as_of=as_of)
    back = store.snapshot(as_of)
    key = ["customer_id", "tag_id"]
    cols = ["customer_id", "tag_id", "value", "source", "version"]
    want = both[cols].astype(str).sort_values(key, ignore_index=True)
    got = back[cols].astype(str).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    # Categories are in string order: sorting the categoricals sorts like strings.
    np.testing.assert_array_equal(
        back.sort_values(key)["score"].to_numpy(), both.sort_values(key)["score"].to_numpy()
    )
    assert rules["tag_id"].cat.categories.is_monotonic_increasing
    assert rules["value"].cat.categories.is_monotonic_increasing


def test_every_bound_strategy_agrees_with_the_raw_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cuts near the start, near the end and in the middle of the data take different
    routes (few events before / few after / a search per customer); all agree."""
    rng = np.random.default_rng(5)
    n_customers, n_events = 400, 3000
    ids = [f"k{i:03d}" for i in range(n_customers)]
    seconds = rng.integers(0, 100 * 86_400, n_events)
    events = make_events(
        [
            {
                "customer_id": ids[int(rng.integers(0, n_customers))],
                "occurred_at": BASE + pd.Timedelta(seconds=int(s), microseconds=int(us)),
                "event_type": "browse",
                "amount": 1.0,
            }
            for s, us in zip(seconds, rng.choice([0, 400_000], n_events), strict=True)
        ]
    )
    customers = customers_frame([{"customer_id": i, "signup_at": BASE} for i in ids])
    prepared = prepare_events(customers, events)
    seen: list[str | None] = []
    original = PreparedEventIndex._minority

    def spy(t_us: np.ndarray, cut_us: int, n_queries: int) -> str | None:
        seen.append(original(t_us, cut_us, n_queries))
        return seen[-1]

    monkeypatch.setattr(PreparedEventIndex, "_minority", staticmethod(spy))
    for as_of in [BASE + pd.Timedelta(days=100), BASE + pd.Timedelta(days=99, seconds=1.5)]:
        as_of_ns = to_ns(as_of)
        frame_ids = pd.Series(ids, dtype="string")
        fast = PreparedEventIndex(prepared, frame_ids, as_of_ns)
        raw = EventIndex(events, frame_ids, as_of_ns)
        for start in [0.5, 1, 30, 60, 99.5]:
            window = ast.Window("relative", start, None)
            for func in ("count", "sum", "days_since"):
                np.testing.assert_array_equal(
                    fast.aggregate(func, "browse", window, None),
                    raw.aggregate(func, "browse", window, None),
                )
    assert {"before", "after", None} <= set(seen)
