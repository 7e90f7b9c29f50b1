"""``POST /score``'s answer rendered from frames: the reference the live path is held to.

The service answers ``POST /score`` from the live path's arrays
(``serving.runtime.OnlineScorer.score_live``, ``serving.predictions.posted_rows``, no
frame). This renders the same answer from a one-row feature frame and a long rule-tag
table through the snapshot index and ``predict_posted``, the way ``/tags`` renders stored
rows; the parity tests (``tests/serving/test_live_online_scorer.py``) hold the live
answer to it. Nothing in the service calls it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from features.errors import FeaturesError
from serving.errors import BadRequest
from serving.predictions import LiveModel, predict_posted
from serving.rendering import Snapshot, SnapshotIndex, iso, json_row
from tags.errors import TagsError

__all__ = ["score_frames"]

FrameScore = Callable[..., tuple[pd.DataFrame, pd.DataFrame]]


def score_frames(
    score: FrameScore,
    models: Mapping[str, LiveModel],
    customer: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    as_of: pd.Timestamp,
    selected: frozenset[str],
) -> tuple[list[dict[str, Any]], dict[str, str | None], dict[str, Any]]:
    """(tag rows, model versions, feature values) of one posted customer.

    Args:
        score: the scorer's ``score(customer, events, *, as_of)``: (feature frame of one
            row, long rule-tag table).
        models: the served champions by name.
        customer: the posted customer record.
        events: the posted events.
        as_of: the instant the features describe.
        selected: the tag ids the caller may see.

    Raises:
        BadRequest: the posted facts cannot be scored (the message names the field).
    """
    try:
        features, rule_tags = score(customer, events, as_of=as_of)
    except (FeaturesError, TagsError) as exc:  # their messages name the field
        raise BadRequest(f"The posted facts cannot be scored: {exc}") from exc
    rows: list[dict[str, Any]] = []
    if len(rule_tags):
        index = SnapshotIndex.build(
            Snapshot(tags=rule_tags, features=features, as_of=as_of, run_id="online")
        )
        cid = str(customer.get("customer_id"))
        rows = [json.loads(text) for tid, text in index.tag_rows(cid) if tid in selected]
    predicted, model_versions = predict_posted(models, features, selected, as_of_iso=iso(as_of))
    rows.extend(predicted)
    return rows, model_versions, json_row(features.iloc[0]) if len(features) else {}
