"""``POST /score``'s adapter over the live fast path gives the batch code's answer."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_features
from features.schema import FactsConfig
from scoring.live import LiveScorer
from serving.sources import LiveOnlineScorer
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.errors import TagsError

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
