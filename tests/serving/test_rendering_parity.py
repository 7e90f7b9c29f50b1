"""The /tags renderer answers byte for byte what it answered before it kept rows as bytes,
planned rows per selection and looked champions' rows up (tests/serving/reference_rendering.py
is the earlier renderer, verbatim): display names (non-ASCII, quotes, some tags unnamed),
named and unnamed indexes, live values, champions with and without pre-rendered rows,
selections, unknown, repeated and feature-only ids."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.access import Caller
from serving.predictions import LiveModel
from serving.rendering import LiveOverlay, Snapshot, SnapshotIndex, predicted_texts, render_tags
from tests.serving import reference_rendering as ref
from tests.serving.fakes import AS_OF, FakeModel, make_runtime, make_snapshot

MARKETING = Caller(name="crm", role="marketing")

NAMES = {
    "rfm_segment": json.dumps("价值_RFM客户分群", ensure_ascii=False),
    "old_customer": json.dumps('Kunde seit "immer" \u00e9', ensure_ascii=False),
    "churn_risk": json.dumps("风险_流失概率", ensure_ascii=False),
    # age_band and predicted_value unnamed: rows without display_name
}
ALL = frozenset({"rfm_segment", "old_customer", "age_band", "churn_risk", "predicted_value"})


def _snapshot() -> Snapshot:
    """60 customers with rule and fact rows, stored model rows (the batch run's), a
    scored and a non-ASCII row, and two customers in the features only."""
    snap = make_snapshot(60)
    tags = snap.tags.copy()
    model_rows = pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(0, 60, 3)],
            "tag_id": "churn_risk",
            "value": "low",
            "source": "model",
            "score": np.linspace(0.01, 0.9, 20),
            "version": "churn-predictor/0",
            "as_of": AS_OF,
        }
    )
    odd = pd.DataFrame(
        {
            "customer_id": ["c0005"],
            "tag_id": ["age_band"],
            "value": ['26-35 \u00fcber "x"'],
            "source": ["fact"],
            "score": [1.0 / 3.0],
            "version": ["age_band@2"],
            "as_of": [AS_OF],
        }
    )
    tags = pd.concat([tags[tags["customer_id"] != "c0005"], odd, model_rows], ignore_index=True)
    extra = pd.DataFrame(
        {
            "customer_id": pd.array(["f0001", "f0002"], dtype="string"),
            "recency_days": [10.0, 300.0],
            "frequency_orders": [1.0, 9.0],
        }
    )
    features = pd.concat([snap.features, extra], ignore_index=True)
    return Snapshot(tags=tags, features=features, as_of=snap.as_of, run_id=snap.run_id)


def _models(features: pd.DataFrame) -> list[LiveModel]:
    return [
        LiveModel.build(FakeModel("churn-predictor", "3", "churn_risk", weight=0.7), features),
        LiveModel.build(FakeModel("value-predictor", "2", "predicted_value"), features),
    ]


def _live_frame() -> pd.DataFrame:
    """Live rows: c0001 re-tagged (one value gone), c0004's churn_risk re-tagged, and a
    customer only real-time tagging knows."""
    now = AS_OF + pd.Timedelta(hours=5)
    rows = [
        ("c0001", "rfm_segment", "important value", "rule", None, "rfm_segment@1"),
        ("c0001", "old_customer", None, "rule", None, "old_customer@1"),
        ("c0004", "churn_risk", "high", "model", 0.912345678, "churn-predictor/3"),
        ("n0001", "age_band", "46-55", "fact", None, "age_band@1"),
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_id", "tag_id", "value", "source", "score", "version"]
    )
    frame["as_of"] = AS_OF
    frame["updated_at"] = now
    frame["seq"] = [1, 2, 3, 4]
    return frame


IDS = [
    "c0000",
    "c0001",
    "nobody",
    "c0004",
    "c0005",
    "f0001",
    "c0001",  # repeated: answered twice
    "n0001",
    'ghost "\u00e9"',
    "c0059",
    "f0002",
    "c0030",
]


@pytest.mark.parametrize(
    "selected",
    [
        ALL,
        ALL - {"churn_risk"},
        frozenset({"churn_risk", "predicted_value"}),
        frozenset({"age_band"}),
        frozenset(),
    ],
    ids=["all", "no-churn", "models-only", "one-rule", "none"],
)
@pytest.mark.parametrize("named", [True, False], ids=["named-index", "unnamed-index"])
@pytest.mark.parametrize("with_live", [False, True], ids=["snapshot", "live-values"])
def test_same_bytes_as_the_earlier_renderer(
    selected: frozenset[str], named: bool, with_live: bool
) -> None:
    snapshot = _snapshot()
    index = SnapshotIndex.build(snapshot, NAMES if named else None)
    old_index = ref.SnapshotIndex.build(snapshot, NAMES if named else None)
    models = _models(index.features)
    if named:  # as the state keeper serves them: champions' rows rendered once
        models = [
            dataclasses.replace(lm, texts=predicted_texts(lm, index.as_of, NAMES)) for lm in models
        ]
    overlay, old_overlay = LiveOverlay(run_id=index.run_id), ref.LiveOverlay(run_id=index.run_id)
    if with_live:
        overlay = overlay.merged(_live_frame())
        old_overlay = old_overlay.merged(_live_frame())
    for names in (NAMES, None):
        got = render_tags(index, models, selected, IDS, overlay, names=names)
        want = ref.render_tags(old_index, models, selected, IDS, old_overlay, names=names)
        assert got.body == want.body
        assert got.returned == want.returned
        assert got.unknown == want.unknown
        assert got.model_versions == want.model_versions


def test_no_snapshot_and_no_models() -> None:
    for selected in (ALL, frozenset()):
        got = render_tags(None, [], selected, ["a", "b"], None, names=NAMES)
        want = ref.render_tags(None, [], selected, ["a", "b"], None, names=NAMES)
        assert got.body == want.body
        assert got.unknown == want.unknown == ["a", "b"]


def test_champion_rows_rendered_once_equal_the_per_request_ones() -> None:
    snapshot = _snapshot()
    index = SnapshotIndex.build(snapshot, NAMES)
    for lm in _models(index.features):
        texts = predicted_texts(lm, index.as_of, NAMES)
        assert len(texts) == len(index.features)
        plain = render_tags(index, [lm], ALL, IDS, names=NAMES)
        looked_up = dataclasses.replace(lm, texts=texts)
        assert render_tags(index, [looked_up], ALL, IDS, names=NAMES).body == plain.body


def test_rows_are_utf8_bytes_and_plans_are_kept_per_selection() -> None:
    index = SnapshotIndex.build(_snapshot(), NAMES)
    tids, texts = index.rows["c0000"]
    assert all(isinstance(t, bytes) for t in texts)
    assert "价值_RFM客户分群" in texts[tids.index("rfm_segment")].decode("utf-8")
    assert index.tag_rows("c0000") == list(zip(tids, texts, strict=True))
    assert index.tag_rows("nobody") == []
    # Customers with the same tag ids share one tuple (what the plans are keyed by).
    same = [e[0] for e in index.rows.values() if e[0] == tids]
    assert len(same) > 1
    assert all(t is tids for t in same)
    render_tags(index, [], ALL, ["c0000"], names=NAMES)
    render_tags(index, [], frozenset({"age_band"}), ["c0000"], names=NAMES)
    assert set(index.plans(ALL)) == {tids}
    assert index.plans(frozenset({"age_band"}))[tids][1] == ("age_band",)


def test_the_keeper_renders_champion_rows_once_per_swap(tmp_path: Path) -> None:
    runtime, models, snaps, _ = make_runtime(keys_path=tmp_path / "keys.json")
    runtime.start()
    try:
        index = runtime.state.snapshot
        assert index is not None
        assert index.named
        churn = runtime.state.models["churn-predictor"]
        assert churn.texts is not None
        assert len(churn.texts) == len(index.features)
        assert b'"version":"churn-predictor/1"' in churn.texts[0]
        first = runtime.tags_json(MARKETING, ["c0001", "c0002"])
        models.versions["churn-predictor"] = "2"  # a new champion: its rows rendered anew
        runtime.reload()
        churn = runtime.state.models["churn-predictor"]
        assert churn.texts is not None
        assert b'"version":"churn-predictor/2"' in churn.texts[0]
        snaps.publish(make_snapshot(50, run_id="run-2", as_of=AS_OF + pd.Timedelta(days=1)))
        runtime.reload()  # a new snapshot: every champion's rows rendered with its as-of
        value = runtime.state.models["value-predictor"]
        assert value.texts is not None
        as_of = json.dumps(runtime.state.snapshot.as_of).encode()  # type: ignore[union-attr]
        assert b'"as_of":' + as_of in value.texts[0]
        assert first != runtime.tags_json(MARKETING, ["c0001", "c0002"])
    finally:
        runtime.stop()


def test_live_rows_carry_display_names() -> None:
    index = SnapshotIndex.build(_snapshot(), NAMES)
    overlay = LiveOverlay(run_id=index.run_id).merged(_live_frame())
    answer = json.loads(render_tags(index, [], ALL, ["c0001", "n0001"], overlay, names=NAMES).body)
    rows = {
        (r["customer_id"], t["tag_id"]): t for r in answer["results"] for t in r.get("tags", [])
    }
    live = rows[("c0001", "rfm_segment")]
    assert live["updated_at"]
    assert live["display_name"] == "价值_RFM客户分群"
    assert "display_name" not in rows[("n0001", "age_band")]  # unnamed tag: no name
