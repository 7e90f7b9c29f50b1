"""The service wired to a real project: batch and online give identical answers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from serving.access import Caller
from serving.keys import ApiKeyStore
from serving.runtime import ServingRuntime
from tagsmith.app import build_runtime
from tests.serving import fakes, project_fixture
from tests.serving.project_fixture import AS_OF, ServedProject

EXEC = Caller("boss", "executive")


@pytest.fixture(scope="module", autouse=True)
def _project_registry_only() -> Iterator[None]:
    """The project's own registry: no MLFLOW_TRACKING_URI left over by other tests."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    return project_fixture.build(tmp_path_factory.mktemp("proj") / "p", n_customers=400)


@pytest.fixture(scope="module")
def runtime(served: ServedProject) -> Iterator[ServingRuntime]:
    rt = build_runtime(served.project)
    result = rt.start()
    assert result.models == {
        "churn-predictor": "serving version 1",
        "value-predictor": "serving version 1",
    }, result
    yield rt
    rt.stop()


def _stored(served: ServedProject, cid: str) -> dict[str, pd.Series]:
    mine = served.tags[served.tags["customer_id"] == cid]
    return {row["tag_id"]: row for _, row in mine.iterrows()}


def test_tags_serve_the_batch_run_and_live_scores_equal_batch(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    ids = served.features["customer_id"].astype(str).tolist()[:60]
    answer = runtime.tags(EXEC, ids)
    assert answer["run_id"] == served.run_id
    assert answer["unknown_ids"] == []
    for item in answer["results"]:
        stored = _stored(served, item["customer_id"])
        got = {t["tag_id"]: t for t in item["tags"]}
        assert set(got) == set(stored), item["customer_id"]
        for tag_id, row in stored.items():
            assert got[tag_id]["value"] == row["value"]
            assert got[tag_id]["source"] == row["source"]
            assert got[tag_id]["version"] == row["version"]
            if row["source"] == "model":  # scored live now, stored by the batch run
                assert got[tag_id]["score"] == pytest.approx(float(row["score"]), abs=1e-6)


def test_score_of_posted_facts_equals_batch_features_and_scores(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    features = served.features.set_index("customer_id")
    buyers = features[~features["never_purchased"]].index.astype(str).tolist()
    for cid in buyers[:5]:
        customer, events = project_fixture.customer_facts(served, cid)
        record = {
            "customer_id": cid,
            "signup_at": pd.Timestamp(customer["signup_at"]),
            **customer["attributes"],
        }
        event_records = [
            e | {"customer_id": cid, "occurred_at": pd.Timestamp(e["occurred_at"])} for e in events
        ]
        answer = runtime.score(EXEC, record, event_records, as_of=AS_OF)
        batch_row = features.loc[cid]
        for name, online in answer["features"].items():
            if name == "customer_id":
                continue
            expected = batch_row[name]
            if (
                expected is None
                or (isinstance(expected, (float, np.floating)) and math.isnan(expected))
                or (expected is pd.NA)
            ):
                assert online is None, name
            elif isinstance(online, float):
                assert online == pytest.approx(float(expected), rel=1e-12, abs=1e-12), name
            else:
                assert online == (
                    expected.item() if isinstance(expected, np.generic) else expected
                ), name
        stored = _stored(served, cid)
        got = {t["tag_id"]: t for t in answer["tags"]}
        for tag_id in ("churn_risk", "predicted_value"):
            assert got[tag_id]["score"] == pytest.approx(float(stored[tag_id]["score"]), abs=1e-6)
            assert got[tag_id]["value"] == stored[tag_id]["value"]
        # population-free rule tags agree too (RFM and other median-based tags are
        # relative to the whole population, which one posted customer cannot carry)
        for tag_id in ("old_customer", "lifecycle_stage", "age_band"):
            if tag_id in stored:
                assert got[tag_id]["value"] == stored[tag_id]["value"], (cid, tag_id)


def test_hot_swap_to_a_new_champion_and_back(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    cid = served.features["customer_id"].astype(str).iloc[3]
    before = {t["tag_id"]: t for t in runtime.tags(EXEC, [cid])["results"][0]["tags"]}
    version = project_fixture.promote_new_churn_model(served, seed=5)
    result = runtime.reload()
    assert result.models["churn-predictor"] == f"serving version {version}"
    after = {t["tag_id"]: t for t in runtime.tags(EXEC, [cid])["results"][0]["tags"]}
    assert after["churn_risk"]["version"] == f"churn-predictor/{version}"
    assert after["predicted_value"] == before["predicted_value"]


def test_http_stack_on_the_project(
    served: ServedProject, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tag_service_app: Any
) -> None:
    key = ApiKeyStore(served.project.api_keys_path).add("svc-test", "service")
    monkeypatch.setitem(fakes.ACTIVE, "factory", lambda: build_runtime(served.project))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    cid = served.features["customer_id"].astype(str).iloc[0]
    with TestClient(tag_service_app) as client:
        headers = {"X-API-Key": key}
        r = client.post("/tags", json={"customer_ids": [cid, "nobody"]}, headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["unknown_ids"] == ["nobody"]
        categories = {
            e["tag_id"]: e["category"]
            for e in client.get("/catalog", headers=headers).json()["tags"]
        }
        assert set(categories.values()) <= {"behaviour", "value", "lifecycle"}
        for t in body["results"][0]["tags"]:
            assert t["tag_id"] in categories
        denied = client.post(
            "/tags", json={"customer_ids": [cid], "tags": ["churn_risk"]}, headers=headers
        )
        assert denied.status_code == 403  # churn_risk is a risk tag; 'service' may not see it
        models = client.get("/models", headers=headers).json()
        assert {m["name"] for m in models["models"]} == {"churn-predictor", "value-predictor"}
        assert models["snapshot"]["run_id"] == served.run_id
    entries = [e for e in _audit(served) if e["actor"] == "svc-test"]
    assert [e["action"] for e in entries][:1] == ["serve.tags"]
    assert cid not in (served.project.audit_log_path).read_text()


def _audit(served: ServedProject) -> list[dict[str, Any]]:
    from tags.audit import AuditLog

    return AuditLog(served.project.audit_log_path).entries()


MARKETING = Caller("crm", "marketing")


def test_explain_agrees_with_the_snapshot_and_the_served_scores(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    """Rule traces re-evaluate to the stored values; model reasons add up to the raw
    score and reproduce the score /tags serves."""
    ids = served.features["customer_id"].astype(str).tolist()[:25]
    explained = runtime.explain(EXEC, ids)
    served_tags = runtime.tags(EXEC, ids)
    assert explained["as_of"] == served_tags["as_of"]
    names = {t.id: t.display_name for t in served.project.catalogue()}
    for result, tagged in zip(explained["results"], served_tags["results"], strict=True):
        assert result["found"]
        rows = {t["tag_id"]: t for t in tagged["tags"]}
        lines = {t["tag_id"]: t for t in result["tags"]}
        assert {t for t, line in lines.items() if line["value"] is not None} == set(rows)
        for tag_id, line in lines.items():
            assert line["display_name"] == names[tag_id]
            if tag_id in rows:
                assert rows[tag_id]["display_name"] == names[tag_id]
                assert line["value"] == rows[tag_id]["value"]
            why = line["why"]
            if line["source"] == "model":
                assert line["score"] == pytest.approx(rows[tag_id]["score"], abs=1e-6)
                total = why["base"] + sum(r["contribution"] for r in why["reasons"]) + why["rest"]
                assert total == pytest.approx(why["raw"], abs=1e-6)
                assert why["score"] == pytest.approx(line["score"], abs=1e-6)
                assert why["consistent"] is True
            else:
                assert why["value"] == line["value"], (tag_id, why)


def test_explain_quotes_only_features_the_role_may_see(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    ids = served.features["customer_id"].astype(str).tolist()[:10]
    answer = runtime.explain(MARKETING, ids)
    visible = runtime.visible_features(MARKETING, runtime.state)
    restricted = {"complaint_risk", "refund_risk"}
    for result in answer["results"]:
        assert not restricted & {t["tag_id"] for t in result["tags"]}
        assert set(result["features"]) <= visible
    unknown = runtime.explain(MARKETING, ["nobody-here"])
    assert unknown["unknown_ids"] == ["nobody-here"]
    assert unknown["results"][0]["found"] is False


def test_explain_is_the_same_with_the_reasons_thread_busy(
    served: ServedProject, runtime: ServingRuntime
) -> None:
    """The second champion's reasons run on a spare thread when it is free and inline
    when another request holds it: the answers are identical either way."""
    explainer = runtime.explainer
    assert explainer is not None
    spare = explainer._spare  # type: ignore[attr-defined]
    ids = served.features["customer_id"].astype(str).tolist()[:15]
    beside = runtime.explain(EXEC, ids)
    assert spare.acquire(blocking=False)  # another request holds the spare thread
    try:
        inline = runtime.explain(EXEC, ids)
    finally:
        spare.release()
    assert beside["results"] == inline["results"]
    models = {t["tag_id"] for r in beside["results"] for t in r["tags"] if t["source"] == "model"}
    assert models == {"churn_risk", "predicted_value"}
    # The slot was given back: a later call can take it again.
    assert spare.acquire(blocking=False)
    spare.release()


def test_explain_notes_a_model_without_a_decomposition(
    served: ServedProject, runtime: ServingRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A champion LightGBM cannot decompose (e.g. multi-class) gets a note instead of
    reasons, on the spare thread and inline alike; the other tags are unaffected."""
    import explain.models as models

    def refuse(model: Any, x: np.ndarray) -> Any:
        raise models.ExplainError("multi-class models are not explained")

    monkeypatch.setattr(models, "contributions", refuse)
    cid = served.features["customer_id"].astype(str).tolist()[0]
    answer = runtime.explain(EXEC, [cid])
    lines = {t["tag_id"]: t for t in answer["results"][0]["tags"]}
    for tag_id in ("churn_risk", "predicted_value"):
        assert lines[tag_id]["why"] is None
        assert lines[tag_id]["notes"] == ["no reasons: multi-class models are not explained"]
        assert lines[tag_id]["value"] is not None
    assert any(line["why"] for line in lines.values() if line["source"] == "rule")
