"""The live re-tag over arrays (``streaming.retag``) against the frame path it replaced.

The oracle is the batch code on canonical frames, as the tagger ran it before:
``build_features`` on the customers' stored rows and events, ``evaluate_tags`` with the
latest batch run's thresholds, each predictor's ``predict_tags`` on the feature frame,
then :func:`tags.live.live_grid`. Values and versions must agree exactly, scores to
1e-12, for imported and live events alike, with a real LightGBM champion (scored from
the arrays) and a frame-only predictor.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from features.build import build_features
from scoring.champions import ChampionModel, ChampionPredictor, ModelTag
from scoring.contract import ModelContract, categorical_levels_of
from streaming.retag import ArrayRetag
from streaming.tagger import live_as_of
from tags.errors import TagStoreError
from tags.live import LiveGrid
from tags.store_format import naive

from .conftest import NOW, T0, FakeChurn, Setup, records
from .frame_retag import frame_grid


def _champion(setup: Setup) -> ChampionPredictor:
    """A small LightGBM model on every feature (categoricals included)."""
    index = setup.tagger.index
    index.refresh()
    features = build_features(
        index.customers,
        index.events_of(list(index.known(index.customers["customer_id"].astype(str)))),
        as_of=T0,
    )
    names = [c for c in features.columns if c != "customer_id"]
    contract = ModelContract(
        target="churn",
        horizon_days=30,
        feature_names=names,
        categorical_levels=categorical_levels_of(features, names),
    )
    tag = ModelTag("value_tier_pred", "ltv-predictor", (("high", 0.5), ("low", None)))
    bare = ChampionModel("ltv-predictor", "1", tag, contract, None)
    x = bare.prepare(features)
    y = np.nan_to_num(features["recency_days"].to_numpy(dtype=float), nan=999.0) > 60
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 3, "verbose": -1},
        lgb.Dataset(x, y.astype(int), categorical_feature=contract.categorical_indices),
        num_boost_round=10,
    )
    return ChampionPredictor(ChampionModel("ltv-predictor", "1", tag, contract, booster))


def _assert_same(got: LiveGrid, want: LiveGrid) -> None:
    assert got.customers == want.customers
    assert got.tags == want.tags
    assert list(got.value) == list(want.value)
    np.testing.assert_allclose(got.score, want.score, rtol=1e-12, atol=0.0, equal_nan=True)
    assert list(got.source) == list(want.source)
    assert list(got.version) == list(want.version)
    assert (got.as_of == want.as_of).all()


@pytest.mark.parametrize("with_live_events", [False, True])
def test_array_retag_equals_the_frame_path(setup: Setup, with_live_events: bool) -> None:
    tagger = setup.tagger
    if with_live_events:  # some customers' newest events come from live segments
        tagger.apply(records(setup.later.head(400)), source="test")
    tagger.index.refresh()
    tagger._refresh_thresholds(force=True)
    assert tagger._thresholds  # the batch run's medians/quantiles are in play
    predictors = [_champion(setup), FakeChurn()]
    tags = tagger.tags + [p.tag_id for p in predictors if p.tag_id not in tagger.tags]
    retag = ArrayRetag(
        spec=tagger.spec,
        catalogue=tagger.catalogue,
        facts=tagger.facts_config,
        predictors=predictors,
        tags=tags,
    )
    known = tagger.index.known(tagger.index.customers["customer_id"].astype(str))
    rng = np.random.default_rng(7)
    as_of = live_as_of(NOW)
    for size in (1, 5, 60, len(known)):
        ids = [str(c) for c in rng.choice(known, size=size, replace=False)]
        got = retag.grid(
            ids,
            tagger.index.customer_table(ids),
            tagger.index.event_tables(ids),
            as_of=as_of,
            at=naive(NOW),
            thresholds=tagger._thresholds,
        )
        _assert_same(got, frame_grid(setup.tagger, predictors, ids, tags, as_of=as_of, now=NOW))
    values = set(got.value[np.asarray(got.source) == "model"])
    assert {"high", "low"} <= values  # the champion really scored


def test_array_retag_refuses_repeated_customers_and_unknown_tags(setup: Setup) -> None:
    tagger = setup.tagger
    tagger.index.refresh()
    cid = str(tagger.index.customers["customer_id"].iloc[0])
    args: dict[str, Any] = {"as_of": live_as_of(NOW), "at": naive(NOW), "thresholds": {}}
    with pytest.raises(TagStoreError, match="once"):
        tagger._retag.grid(
            [cid, cid],
            tagger.index.customer_table([cid]),
            tagger.index.event_tables([cid]),
            **args,
        )
    narrow = ArrayRetag(
        spec=tagger.spec,
        catalogue=tagger.catalogue,
        facts=tagger.facts_config,
        predictors=[],
        tags=tagger.tags[:1],
    )
    with pytest.raises(TagStoreError, match="evaluated tags"):
        narrow.grid(
            [cid], tagger.index.customer_table([cid]), tagger.index.event_tables([cid]), **args
        )
