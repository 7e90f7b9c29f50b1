"""The live array path (``LiveScorer.score``) against the batch path, customer by customer.

The oracle is the batch code on canonical frames: ``build_features`` on the customers'
frames, ``evaluate_tags`` on those features and events, and a LightGBM champion scored
on the batch feature frame (``model.prepare``). The live path never builds a frame; its
features must agree to 1e-9, its tag values exactly, its scores exactly.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from scoring.champions import ChampionModel, ModelTag
from scoring.contract import ModelContract, categorical_levels_of
from scoring.live import LiveScorer
from scoring.live_records import frame_records
from synthetic import generate
from tags.engine import evaluate_tags

from .conftest import sorted_text

AS_OF = pd.Timestamp("2024-09-01", tz="UTC")


@pytest.fixture(scope="module")
def data() -> Any:
    return generate(150, start="2024-01-01", end="2024-10-31", seed=23)


def _batch(scorer: LiveScorer, customers: list[dict[str, Any]], events: list[dict[str, Any]]):
    """The batch code on canonical frames of the same records."""
    cf, ef = scorer.customers_frame(customers), scorer.events_frame(events)
    features = build_features(cf, ef, as_of=AS_OF)
    assert scorer.catalogue is not None
    return features, evaluate_tags(features, ef, scorer.catalogue, as_of=AS_OF)


def _assert_same(
    scorer: LiveScorer,
    customers: list[dict[str, Any]],
    events: list[dict[str, Any]],
    models: Any = (),
) -> Any:
    result = scorer.score(customers, events, as_of=AS_OF, models=models)
    features, tags = _batch(scorer, customers, events)
    pd.testing.assert_frame_equal(result.features, features, rtol=1e-9, atol=0.0)
    if len(features):
        pd.testing.assert_frame_equal(sorted_text(result.rule_tags), sorted_text(tags))
    else:
        assert not len(result.rule_tags)
    scored = set(features["customer_id"].astype(str))
    assert result.customer_ids == list(features["customer_id"].astype(str))
    assert set(result.skipped) == {c["customer_id"] for c in customers} - scored
    return result, features


@pytest.fixture(scope="module")
def champion(data: Any, scorer: LiveScorer) -> ChampionModel:
    """A small LightGBM churn model on every feature, categoricals included."""
    features = build_features(data.customers, data.events, as_of=AS_OF)
    names = [c for c in features.columns if c != "customer_id"]
    levels = categorical_levels_of(features, names)
    contract = ModelContract(
        target="churn", horizon_days=30, feature_names=names, categorical_levels=levels
    )
    champion = ChampionModel(
        name="churn-predictor",
        version="1",
        tag=ModelTag("churn_risk", "churn-predictor", (("high", 0.5), ("low", None))),
        contract=contract,
        booster=None,
    )
    x = champion.prepare(features)
    y = (np.nan_to_num(features["recency_days"].to_numpy(dtype=float), nan=999.0) > 60).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 3, "verbose": -1},
        lgb.Dataset(x, y, categorical_feature=contract.categorical_indices),
        num_boost_round=15,
    )
    return ChampionModel(
        name="churn-predictor",
        version="1",
        tag=champion.tag,
        contract=contract,
        booster=booster,
    )


def test_random_customers_and_a_real_model(
    data: Any, scorer: LiveScorer, champion: ChampionModel
) -> None:
    rng = np.random.default_rng(5)
    ids = sorted(data.customers["customer_id"])
    for size in (1, 1, 3, 17):
        chosen = list(rng.choice(ids, size=size, replace=False))
        customers = frame_records(data.customers[data.customers["customer_id"].isin(chosen)])
        events = frame_records(data.events[data.events["customer_id"].isin(chosen)])
        rng.shuffle(events)  # arrival order, not the store's
        result, features = _assert_same(scorer, customers, events, models=[champion])
        if len(features):
            expected = champion.predict(champion.prepare(features))
            got = result.predictions["churn-predictor"]
            np.testing.assert_array_equal(got.scores, expected)
            assert got.labels == champion.label(expected)


def test_edge_cases(data: Any, scorer: LiveScorer, champion: ChampionModel) -> None:
    """No events, events after as_of only, missing attributes (null categoricals and
    birth year), events without category or order id, a customer signed up later,
    and events of a customer who was not posted."""
    day = pd.Timestamp("2024-03-01", tz="UTC")
    customers = [
        {"customer_id": "e0", "signup_at": day},  # no attributes, no events
        {"customer_id": "e1", "signup_at": day, "region": "north", "birth_year": None},
        {"customer_id": "e2", "signup_at": day, "gender": "female", "birth_year": 1980},
        {"customer_id": "e3", "signup_at": AS_OF + pd.Timedelta(days=2)},  # skipped
    ]
    events = [
        # e1: only future events
        {"customer_id": "e1", "occurred_at": AS_OF, "event_type": "purchase", "amount": 9.0},
        {"customer_id": "e1", "occurred_at": AS_OF + pd.Timedelta(days=3), "event_type": "login"},
        # e2: purchases without order ids or categories, a repeated order id, a refund
        {"customer_id": "e2", "occurred_at": day, "event_type": "purchase", "amount": 5.0},
        {
            "customer_id": "e2",
            "occurred_at": day,
            "event_type": "purchase",
            "amount": 2.5,
            "order_id": "o1",
            "category": "books",
        },
        {
            "customer_id": "e2",
            "occurred_at": day + pd.Timedelta(hours=1),
            "event_type": "purchase",
            "amount": 1.0,
            "order_id": "o1",
            "category": "books",
        },
        {
            "customer_id": "e2",
            "occurred_at": day + pd.Timedelta(days=40),
            "event_type": "refund",
            "amount": 2.0,
            "order_id": "o1",
        },
        {
            "customer_id": "e2",
            "occurred_at": day + pd.Timedelta(days=41, microseconds=5),
            "event_type": "browse",
            "category": "toys",
        },
        # someone else: ignored
        {"customer_id": "zz", "occurred_at": day, "event_type": "purchase", "amount": 1.0},
    ]
    result, features = _assert_same(scorer, customers, events, models=[champion])
    assert result.skipped == ["e3"]
    expected = champion.predict(champion.prepare(features))
    np.testing.assert_array_equal(result.predictions["churn-predictor"].scores, expected)
    assert result.row_of("e2") == 2
    assert result.row_of("e3") is None


_TYPES = ["purchase", "refund", "browse", "login", "complaint"]


@st.composite
def _posted(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n = draw(st.integers(1, 3))
    start = pd.Timestamp("2023-06-01", tz="UTC")
    customers = []
    events = []
    for k in range(n):
        cid = f"c{k}"
        signup = start + pd.Timedelta(days=draw(st.integers(0, 500)))
        customers.append(
            {
                "customer_id": cid,
                "signup_at": signup,
                "region": draw(st.sampled_from([None, "north", "south"])),
                "birth_year": draw(st.sampled_from([None, 1950, 1999])),
            }
        )
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.sampled_from(_TYPES))
            seconds = draw(st.integers(0, 500 * 86_400))
            amount = (
                draw(st.floats(0, 500, allow_nan=False)) if kind in ("purchase", "refund") else None
            )
            events.append(
                {
                    "customer_id": cid,
                    "occurred_at": start
                    + pd.Timedelta(seconds=seconds, microseconds=draw(st.sampled_from([0, 0, 7]))),
                    "event_type": kind,
                    "amount": amount,
                    "category": draw(st.sampled_from([None, "a", "b"])),
                    "order_id": draw(st.sampled_from([None, "o1", "o2"])),
                }
            )
    return customers, draw(st.permutations(events))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(posted=_posted())
def test_any_posted_facts(scorer: LiveScorer, posted: Any) -> None:
    customers, events = posted
    _assert_same(scorer, customers, list(events))
