"""The live re-tag's frame path, before the array path replaced it: the oracle.

``build_features`` on the customers' stored rows and events, ``evaluate_tags`` with the
latest batch run's thresholds, each predictor's ``predict_tags`` on the feature frame,
then the rows placed in a :class:`tags.live.LiveGrid`. The array re-tag's tests compare
against it, and ``benchmarks/realtime_retag.py`` times it as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from features.build import build_features
from tags.engine import concat_tag_tables, evaluate_tags
from tags.live import LiveGrid
from tags.store_format import TAG_COLUMNS, naive

__all__ = ["frame_grid"]


def frame_grid(
    tagger: Any,
    predictors: Sequence[Any],
    ids: list[str],
    tags: list[str],
    *,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
) -> LiveGrid:
    """``tagger``'s customers ``ids`` re-tagged by the frame path, as the live grid."""
    customers = tagger.index.customers_of(ids)
    events = tagger.index.events_of(ids)
    features = build_features(customers, events, as_of=as_of, spec=tagger.spec)
    tables = []
    if len(features):
        rule = evaluate_tags(
            features, events, tagger.catalogue, as_of=as_of, thresholds=tagger._thresholds
        )
        tables.append(rule[list(TAG_COLUMNS)])
        for predictor in predictors:
            out = predictor.predict_tags(features, as_of=as_of)[list(TAG_COLUMNS)].copy()
            out["as_of"] = as_of
            tables.append(out)
    rows = concat_tag_tables(tables) if tables else pd.DataFrame(columns=list(TAG_COLUMNS))
    plain = pd.DataFrame(
        {
            c: rows[c].astype("string") if c not in ("score", "as_of") else rows[c]
            for c in TAG_COLUMNS
        }
    )
    return LiveGrid.of_rows(plain, ids, tags, at=naive(now))
