"""Tier 1: the service engine on in-memory fakes (no HTTP)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.access import Caller
from serving.errors import BadRequest, Forbidden, Unauthorized
from serving.keys import ApiKeyStore
from serving.runtime import ServingRuntime
from tests.serving.fakes import AS_OF, FakeModelSource, ListAudit, make_runtime, make_snapshot

MARKETING = Caller(name="crm", role="marketing")
ADMIN = Caller(name="ops", role="admin")


@pytest.fixture
def setup(tmp_path: Path):
    runtime, models, snaps, audit = make_runtime(keys_path=tmp_path / "keys.json")
    runtime.start()
    yield runtime, models, snaps, audit
    runtime.stop()


def _tags(answer: dict, cid: str) -> dict[str, dict]:
    (item,) = [r for r in answer["results"] if r["customer_id"] == cid]
    return {t["tag_id"]: t for t in item["tags"]}


def test_rule_and_predicted_tags_with_versions(setup) -> None:
    runtime, *_ = setup
    answer = runtime.tags(MARKETING, ["c0001"])
    tags = _tags(answer, "c0001")
    assert set(tags) == {"rfm_segment", "old_customer", "churn_risk", "predicted_value"}
    assert tags["rfm_segment"] | {} == {
        "display_name": "rfm_segment",  # the fake catalogue names no tag
        "tag_id": "rfm_segment",
        "value": "general win-back",
        "score": None,
        "source": "rule",
        "version": "rfm_segment@1",
        "as_of": AS_OF.isoformat(),
    }
    churn = tags["churn_risk"]
    assert churn["source"] == "model"
    assert churn["version"] == "churn-predictor/1"
    assert 0.0 <= churn["score"] <= 1.0
    assert churn["value"] == (
        "high" if churn["score"] >= 0.6 else "medium" if churn["score"] >= 0.3 else "low"
    )
    assert answer["model_versions"] == {"churn-predictor": "1", "value-predictor": "1"}


def test_predictions_match_batch_scoring_of_the_snapshot(setup) -> None:
    runtime, *_ = setup
    snap = make_snapshot(50)
    ids = [f"c{i:04d}" for i in range(0, 50, 7)]
    answer = runtime.tags(MARKETING, ids)
    model = runtime.state.models["churn-predictor"].model
    batch = model.predict(model.prepare(snap.features))
    for cid in ids:
        pos = int(cid[1:])
        assert _tags(answer, cid)["churn_risk"]["score"] == pytest.approx(batch[pos], abs=1e-6)


def test_unknown_ids_are_reported_per_id(setup) -> None:
    runtime, *_ = setup
    answer = runtime.tags(MARKETING, ["c0002", "nobody", "c0003"])
    assert answer["unknown_ids"] == ["nobody"]
    found = {r["customer_id"]: r["found"] for r in answer["results"]}
    assert found == {"c0002": True, "nobody": False, "c0003": True}
    assert [r["customer_id"] for r in answer["results"]] == ["c0002", "nobody", "c0003"]


def test_role_filters_restricted_and_out_of_scope_tags(setup) -> None:
    runtime, *_ = setup
    assert "age_band" not in _tags(runtime.tags(MARKETING, ["c0001"]), "c0001")
    assert "age_band" in _tags(runtime.tags(ADMIN, ["c0001"]), "c0001")
    service = Caller(name="svc", role="service")
    assert set(_tags(runtime.tags(service, ["c0001"]), "c0001")) == {"old_customer", "churn_risk"}


def test_asking_for_a_hidden_tag_by_name_is_forbidden(setup) -> None:
    runtime, *_ = setup
    with pytest.raises(Forbidden, match="age_band"):
        runtime.tags(MARKETING, ["c0001"], tag_ids=["age_band", "rfm_segment"])


def test_unknown_category_and_tag_are_bad_requests(setup) -> None:
    runtime, *_ = setup
    with pytest.raises(BadRequest, match="astrology"):
        runtime.tags(MARKETING, ["c0001"], categories=["astrology"])
    with pytest.raises(BadRequest, match="no_such_tag"):
        runtime.tags(MARKETING, ["c0001"], tag_ids=["no_such_tag"])


def test_category_and_tag_filters(setup) -> None:
    runtime, *_ = setup
    by_cat = _tags(runtime.tags(MARKETING, ["c0001"], categories=["value"]), "c0001")
    assert set(by_cat) == {"rfm_segment", "predicted_value"}
    by_tag = _tags(runtime.tags(MARKETING, ["c0001"], tag_ids=["churn_risk"]), "c0001")
    assert set(by_tag) == {"churn_risk"}


def test_every_read_is_audited_with_hashed_ids(setup) -> None:
    runtime, _, _, audit = setup
    runtime.tags(MARKETING, ["c0001", "nobody"])
    entry = audit.entries[-1]
    assert entry["actor"] == "crm"
    assert entry["role"] == "marketing"
    assert entry["action"] == "serve.tags"
    assert entry["n_customers"] == 1
    assert "churn_risk" in entry["tags"]
    assert entry["extra"]["model_versions"] == {"churn-predictor": "1", "value-predictor": "1"}
    text = repr(entry)
    assert "c0001" not in text
    assert "nobody" not in text
    assert entry["query"]["customer_id_hashes"] == runtime.hash_ids(["c0001", "nobody"])


def test_authentication(tmp_path: Path) -> None:
    runtime, *_ = make_runtime(keys_path=tmp_path / "keys.json")
    key = ApiKeyStore(tmp_path / "keys.json").add("crm", "marketing")
    assert runtime.authenticate({"authorization": f"Bearer {key}"}) == MARKETING
    assert runtime.authenticate({"x-api-key": key}) == MARKETING
    with pytest.raises(Unauthorized, match="Got none"):
        runtime.authenticate({})
    with pytest.raises(Unauthorized, match="matches no stored key"):
        runtime.authenticate({"authorization": "Bearer tsk_abc"})


def test_new_tagging_run_is_picked_up_on_reload(setup) -> None:
    runtime, _, snaps, _ = setup
    assert runtime.tags(MARKETING, ["c0070"])["unknown_ids"] == ["c0070"]
    snaps.publish(make_snapshot(80, run_id="run-2"))
    assert runtime.reload().snapshot.startswith("loaded run run-2")
    answer = runtime.tags(MARKETING, ["c0070"])
    assert answer["unknown_ids"] == []
    assert answer["run_id"] == "run-2"
    assert "churn_risk" in _tags(answer, "c0070")


def test_failed_model_keeps_the_old_one_and_models_says_why(setup) -> None:
    runtime, models, _, _ = setup
    models.versions["churn-predictor"] = "2"
    models.broken.add(("churn-predictor", "2"))
    result = runtime.admin_reload(ADMIN)
    churn = next(m for m in result["models"] if m["name"] == "churn-predictor")
    assert churn["serving_version"] == "1"
    assert churn["last_result"] == "failed"
    assert "smoke test" in churn["last_error"]
    assert churn["candidate_version"] == "2"
    assert _tags(runtime.tags(MARKETING, ["c0001"]), "c0001")["churn_risk"]["version"] == (
        "churn-predictor/1"
    )


def test_non_finite_scores_fail_the_smoke_test(setup) -> None:
    runtime, models, _, _ = setup

    class NanModel:
        name, version, tag_id, loaded_at = "churn-predictor", "3", "churn_risk", "now"

        def prepare(self, features: pd.DataFrame) -> np.ndarray:
            return np.zeros((len(features), 1))

        def predict(self, matrix: np.ndarray) -> np.ndarray:
            return np.full(len(matrix), np.nan)

        def label(self, scores: np.ndarray) -> list[str]:
            return ["low"] * len(scores)

    models.versions["churn-predictor"] = "3"
    models.load = lambda name, version: NanModel()  # type: ignore[method-assign]
    runtime.reload()
    status = runtime.state.status["churn-predictor"]
    assert status.serving_version == "1"
    assert "finite" in (status.last_error or "")


def test_demoted_champion_stops_serving_predictions(setup) -> None:
    runtime, models, _, _ = setup
    models.versions["value-predictor"] = None
    runtime.reload()
    tags = _tags(runtime.tags(MARKETING, ["c0001"]), "c0001")
    assert "predicted_value" not in tags
    assert "churn_risk" in tags
    assert runtime.state.status["value-predictor"].last_result == "no champion"


def test_admin_reload_needs_admin_role(setup) -> None:
    runtime, *_ = setup
    with pytest.raises(Forbidden, match="admin"):
        runtime.admin_reload(MARKETING)


def test_watcher_swaps_in_a_new_champion(tmp_path: Path) -> None:
    runtime, models, _, _ = make_runtime(keys_path=tmp_path / "k.json", watch_interval_s=0.05)
    runtime.start()
    try:
        models.versions["churn-predictor"] = "2"
        deadline = time.monotonic() + 10
        while runtime.state.status["churn-predictor"].serving_version != "2":
            assert time.monotonic() < deadline, "the watcher never swapped the model"
            time.sleep(0.02)
    finally:
        runtime.stop()


def test_no_request_fails_during_swaps_under_load(setup) -> None:
    """Readers hammer tags() while models and snapshots are swapped repeatedly."""
    runtime, models, snaps, _ = setup
    models.load_delay_s = 0.01  # a slow load: readers must keep getting answers meanwhile
    errors: list[BaseException] = []
    answers = 0
    stop = threading.Event()
    lock = threading.Lock()

    def reader() -> None:
        nonlocal answers
        while not stop.is_set():
            try:
                answer = runtime.tags(MARKETING, ["c0001", "c0002", "c0010"])
                assert answer["unknown_ids"] == []
                for item in answer["results"]:
                    got = {t["tag_id"] for t in item["tags"]}
                    assert {"churn_risk", "predicted_value", "rfm_segment"} <= got
                    # one consistent state: the version listed is the one that scored
                    for t in item["tags"]:
                        if t["source"] == "model":
                            name, version = t["version"].split("/")
                            assert answer["model_versions"][name] == version
                with lock:
                    answers += 1
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for version in range(2, 8):
        models.versions["churn-predictor"] = str(version)
        models.versions["value-predictor"] = str(version)
        snaps.publish(make_snapshot(50, run_id=f"run-{version}"))
        runtime.reload()
        assert runtime.state.status["churn-predictor"].serving_version == str(version)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert answers > 20


def test_score_from_posted_facts(setup) -> None:
    runtime, *_ = setup
    events = [
        {
            "customer_id": "new",
            "occurred_at": AS_OF - pd.Timedelta(days=d),
            "event_type": "purchase",
        }
        for d in (5, 40, 90)
    ]
    answer = runtime.score(
        MARKETING, {"customer_id": "new", "signup_at": AS_OF}, events, as_of=AS_OF
    )
    assert answer["features"]["recency_days"] == 5.0
    tags = {t["tag_id"]: t for t in answer["tags"]}
    assert set(tags) == {"old_customer", "churn_risk", "predicted_value"}
    model = runtime.state.models["churn-predictor"].model
    expected = model.predict(np.array([[5.0, 3.0]]))[0]
    assert tags["churn_risk"]["score"] == pytest.approx(expected, abs=1e-6)


def test_runtime_without_snapshot_reports_every_id_unknown(tmp_path: Path) -> None:
    runtime, _, snaps, _ = make_runtime(keys_path=tmp_path / "k.json")
    snaps.snapshot = None
    runtime.start()
    answer = runtime.tags(MARKETING, ["c0001"])
    assert answer["unknown_ids"] == ["c0001"]
    assert runtime.models(MARKETING)["snapshot"]["run_id"] is None


def test_model_source_lookup_failure_is_reported(tmp_path: Path) -> None:
    class Down(FakeModelSource):
        def champion_version(self, name: str) -> str | None:
            raise ConnectionError("registry unreachable")

    keys = ApiKeyStore(tmp_path / "k.json")
    runtime, _, snaps, _ = make_runtime(keys_path=tmp_path / "k.json")
    down = ServingRuntime(
        models=runtime.model_tags,
        model_source=Down({}),
        snapshot_source=snaps,
        governance=runtime.governance,
        audit=ListAudit(),
        verify_key=keys.verify,
        id_pepper=keys.pepper,
    )
    down.start()
    status = down.state.status["churn-predictor"]
    assert status.last_result == "failed"
    assert "registry unreachable" in (status.last_error or "")


def test_score_with_facts_breaking_the_contract_is_400(setup) -> None:
    runtime, *_ = setup
    old = [
        {
            "customer_id": "x",
            "occurred_at": pd.Timestamp("1990-01-01", tz="UTC"),
            "event_type": "purchase",
        }
    ]
    with pytest.raises(BadRequest, match="after 2000"):
        runtime.score(MARKETING, {"customer_id": "x", "signup_at": AS_OF}, old, as_of=AS_OF)


def test_score_returns_only_features_feeding_a_tag_the_role_may_see(setup) -> None:
    """Issue 14 finding 4: a feature that feeds only tags a role may not see is withheld."""
    runtime, *_ = setup
    events = [
        {
            "customer_id": "new",
            "occurred_at": AS_OF - pd.Timedelta(days=d),
            "event_type": "purchase",
        }
        for d in (5, 40, 90)
    ]
    customer = {"customer_id": "new", "signup_at": AS_OF}
    service = Caller(name="svc", role="service")  # sees old_customer, not rfm_segment
    answer = runtime.score(service, customer, events, as_of=AS_OF)
    assert set(answer["features"]) == {"customer_id", "frequency_orders"}
    answer = runtime.score(MARKETING, customer, events, as_of=AS_OF)
    assert set(answer["features"]) == {"customer_id", "frequency_orders", "recency_days"}
    nobody = Caller(name="x", role="unknown-role")
    assert runtime.access.features(nobody.role, {}) == frozenset()


def test_tags_rows_carry_display_names(setup) -> None:
    runtime, *_ = setup
    answer = runtime.tags(MARKETING, ["c0001"])
    rows = answer["results"][0]["tags"]
    assert rows
    for row in rows:
        assert row["display_name"] == row["tag_id"]  # the fake catalogue names none


def test_explain_is_refused_without_an_explainer(setup) -> None:
    runtime, *_ = setup
    with pytest.raises(BadRequest, match="explanations"):
        runtime.explain(MARKETING, ["c0001"])


def test_names_built_into_the_index_render_the_same_bytes_as_per_request() -> None:
    """Parity: display names baked into the snapshot's rows (the service's path) give the
    same answer as inserting them per request, unnamed tags and unknown ids included."""
    from serving.rendering import SnapshotIndex, render_tags

    snapshot = make_snapshot(30)
    names = {"rfm_segment": '"RFM \\"segment\\""', "old_customer": '"Kunde seit \u00e9"'}
    plain = SnapshotIndex.build(snapshot)
    named = SnapshotIndex.build(snapshot, names)
    assert named.named
    assert not plain.named
    selected = frozenset({"rfm_segment", "old_customer", "age_band"})
    ids = ["c0003", "c0004", "ghost", "c0029"]
    per_request = render_tags(plain, [], selected, ids, names=names)
    baked = render_tags(named, [], selected, ids, names=names)
    assert baked.body == per_request.body
    assert b'"display_name":"RFM \\"segment\\"","tag_id":"rfm_segment"' in baked.body
    assert b'{"tag_id":"age_band"' in baked.body  # no name: no display_name key
