"""``POST /score``'s adapter over the live fast path gives the batch code's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.build import build_features
from features.schema import FactsConfig
from scoring.live import LiveScorer
from serving.access import Caller
from serving.posted import score_frames
from serving.rendering import json_row
from serving.sources import LiveOnlineScorer
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.errors import TagsError
from tests.serving.fakes import AS_OF as FAKE_AS_OF
from tests.serving.fakes import FakeOnlineScorer, make_runtime

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
CUSTOMER = {"customer_id": "k1", "signup_at": pd.Timestamp("2024-01-01", tz="UTC")}
EVENTS = [
    {
        "customer_id": "k1",
        "occurred_at": pd.Timestamp("2024-02-01T10:00:00", tz="UTC"),
        "event_type": "purchase",
        "amount": 30.0,
        "order_id": "o1",
    },
    {
        "customer_id": "k1",
        "occurred_at": pd.Timestamp("2024-05-20T08:00:00+08:00"),
        "event_type": "browse",
    },
]


@pytest.fixture(scope="module")
def scorer() -> LiveOnlineScorer:
    live = LiveScorer(catalogue=Catalogue.load(LIBRARY_DIR), facts=FactsConfig())
    return LiveOnlineScorer(live)


def test_one_posted_customer(scorer: LiveOnlineScorer) -> None:
    features, tags = scorer.score(CUSTOMER, EVENTS, as_of=AS_OF)
    live = scorer.live
    expected = build_features(
        live.customers_frame([CUSTOMER]), live.events_frame(EVENTS), as_of=AS_OF
    )
    pd.testing.assert_frame_equal(features, expected)
    assert features["monetary_total"].tolist() == [30.0]
    assert set(tags["customer_id"].astype(str)) <= {"k1"}
    assert len(tags)


def test_a_customer_signed_up_later_is_refused(scorer: LiveOnlineScorer) -> None:
    later = CUSTOMER | {"signup_at": pd.Timestamp("2024-07-01", tz="UTC")}
    with pytest.raises(TagsError, match="signed up before as_of"):
        scorer.score(later, [], as_of=AS_OF)


def test_row_values_are_the_frame_rows_json(scorer: LiveOnlineScorer) -> None:
    """The live answer's feature values are what json_row shows of the frame's row."""
    events = [
        *EVENTS,
        {
            "customer_id": "k1",
            "occurred_at": pd.Timestamp("2024-04-03T09:30:00", tz="UTC"),
            "event_type": "purchase",
            "amount": 12.5,
            "category": "books",
            "order_id": "o2",
        },
    ]
    customer = CUSTOMER | {"region": "north", "birth_year": 1990, "city": None}
    result = scorer.score_live(customer, events, as_of=AS_OF)
    assert result.row_values(0) == json_row(result.features.iloc[0])


def test_runtime_answers_the_same_from_arrays_and_from_frames(tmp_path: Path) -> None:
    """POST /score's live path (posted_rows, row_values) renders what the frame path
    (snapshot index of the rule tags, predict_posted, json_row: serving.posted) renders."""
    runtime, *_ = make_runtime(keys_path=tmp_path / "keys.json")
    runtime.start()
    live = LiveOnlineScorer(LiveScorer(catalogue=Catalogue.load(LIBRARY_DIR), facts=FactsConfig()))
    runtime.online_scorer = live
    customer = {"customer_id": "new", "signup_at": FAKE_AS_OF - pd.Timedelta(days=400)}
    events = [
        {
            "customer_id": "new",
            "occurred_at": FAKE_AS_OF - pd.Timedelta(days=d, hours=d % 5),
            "event_type": "purchase" if d % 3 else "browse",
            "amount": float(d) if d % 3 else None,
            "category": "books" if d % 2 else None,
            "order_id": f"o{d // 2}",
        }
        for d in (5, 6, 40, 41, 90, 200, 390)
    ]
    for caller in (Caller(name="crm", role="marketing"), Caller(name="svc", role="service")):
        from_arrays = runtime.score(caller, customer, events, as_of=FAKE_AS_OF)
        state = runtime.keeper.state
        selected = runtime.access.selection(caller, None, None)
        rows, versions, values = score_frames(
            live.score, state.models, customer, events, FAKE_AS_OF, selected
        )
        visible = runtime.visible_features(caller, state, selected)
        assert from_arrays["tags"] == rows
        assert from_arrays["model_versions"] == versions
        assert from_arrays["features"] == {
            k: v for k, v in values.items() if k == "customer_id" or k in visible
        }
        assert from_arrays["tags"]


def test_start_warms_the_online_scorer_with_the_champions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The runtime warms the scorer once at start; a failing warm-up is logged, and the
    service still starts and scores."""
    runtime, *_ = make_runtime(keys_path=tmp_path / "keys.json")
    scorer = runtime.online_scorer
    assert isinstance(scorer, FakeOnlineScorer)
    runtime.start()
    assert scorer.warmed == [["churn-predictor", "value-predictor"]]

    class Failing(FakeOnlineScorer):
        def warm(self, models: Any) -> None:
            raise TagsError("a rule failed on the made-up customer")

    broken, *_ = make_runtime(keys_path=tmp_path / "keys2.json")
    broken.online_scorer = Failing()
    with caplog.at_level("WARNING", logger="serving.runtime"):
        broken.start()
    assert "warm-up failed: TagsError" in caplog.text
    customer = {"customer_id": "c1", "signup_at": FAKE_AS_OF - pd.Timedelta(days=30)}
    answer = broken.score(Caller(name="crm", role="marketing"), customer, [], as_of=FAKE_AS_OF)
    assert answer["customer_id"] == "c1"
