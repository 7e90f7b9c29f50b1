"""Tier 2: the whole HTTP stack in-process, ``TestClient(TagService.to_asgi())``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from serving.keys import ApiKeyStore
from tests.serving import fakes


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    store = ApiKeyStore(path)
    return {
        "path": str(path),
        "marketing": store.add("crm", "marketing"),
        "admin": store.add("ops", "admin"),
        "service": store.add("web", "service"),
    }


@pytest.fixture(scope="module")
def client(
    keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory, tag_service_app: Any
) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGSMITH_FAKE_KEYS", keys["path"])
    mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
    with TestClient(tag_service_app) as c:
        yield c
    mp.undo()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _post(client: TestClient, path: str, key: str | None, **body: Any):
    return client.post(path, json=body, headers=_auth(key) if key else {})


def test_tags_returns_rule_and_predicted_tags(client: TestClient, keys: dict[str, str]) -> None:
    r = _post(client, "/tags", keys["marketing"], customer_ids=["c0001", "ghost"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_ids"] == ["ghost"]
    first = body["results"][0]
    assert first["found"] is True
    sources = {t["tag_id"]: t["source"] for t in first["tags"]}
    assert sources["churn_risk"] == "model"
    assert sources["rfm_segment"] == "rule"
    assert "age_band" not in sources
    assert body["results"][1] == {
        "customer_id": "ghost",
        "found": False,
        "error": "unknown customer id",
    }


def test_x_api_key_header_works(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/tags", json={"customer_ids": ["c0001"]}, headers={"X-API-Key": keys["service"]}
    )
    assert r.status_code == 200
    tags = {t["tag_id"] for t in r.json()["results"][0]["tags"]}
    assert tags == {"old_customer", "churn_risk"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tsk_nope"},
        {"X-API-Key": "garbage"},
        {"Authorization": "Basic abc"},
    ],
)
def test_no_valid_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in (
        ("post", "/tags"),
        ("get", "/catalog"),
        ("get", "/models"),
        ("post", "/admin/reload"),
    ):
        kwargs: dict[str, Any] = {"headers": headers}
        if method == "post":
            kwargs["json"] = {"customer_ids": ["c0001"]} if path == "/tags" else {}
        r = getattr(client, method)(path, **kwargs)
        assert r.status_code == 401, (path, r.text)
        assert "API key" in r.json()["error"]


def test_hidden_tag_by_name_is_403(client: TestClient, keys: dict[str, str]) -> None:
    r = _post(client, "/tags", keys["marketing"], customer_ids=["c0001"], tags=["age_band"])
    assert r.status_code == 403
    assert "age_band" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"customer_ids": []}, "at least 1"),
        ({"customer_ids": [f"c{i}" for i in range(1001)]}, "at most 1000"),
        ({"customer_ids": "c0001"}, "valid array"),
        ({"customer_ids": [1, 2]}, "valid string"),
        ({}, "required"),
        ({"customer_ids": ["c0001"], "categories": ["astrology"]}, "astrology"),
        ({"customer_ids": ["c0001"], "tags": ["nope"]}, "nope"),
        ({"customer_ids": [""]}, "at least 1 character"),
    ],
)
def test_bad_input_is_400_with_a_clear_message(
    client: TestClient, keys: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    r = client.post("/tags", json=body, headers=_auth(keys["marketing"]))
    assert r.status_code == 400, r.text
    assert fragment in r.text


def test_malformed_json_is_400(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/tags",
        content=b'{"customer_ids": [',
        headers={**_auth(keys["marketing"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "Invalid JSON" in r.text


def test_oversized_body_is_413(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/tags",
        content=b" " * 3_000_000,
        headers={**_auth(keys["marketing"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert "at most" in r.json()["error"]


def test_oversized_chunked_body_is_413(client: TestClient, keys: dict[str, str]) -> None:
    def chunks():
        for _ in range(40):
            yield b" " * 100_000

    r = client.post(
        "/tags",
        content=chunks(),
        headers={**_auth(keys["marketing"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_catalog_lists_only_visible_tags(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/catalog", headers=_auth(keys["service"]))
    assert r.status_code == 200
    assert {t["tag_id"] for t in r.json()["tags"]} == {"old_customer", "churn_risk"}


def test_models_reports_serving_versions(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/models", headers=_auth(keys["marketing"]))
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert models["churn-predictor"]["serving_version"] == "1"
    assert models["churn-predictor"]["last_result"] in ("ok", "unchanged")


def test_admin_reload_swaps_a_new_champion(client: TestClient, keys: dict[str, str]) -> None:
    assert _post(client, "/admin/reload", keys["marketing"]).status_code == 403
    fakes.LAST["models"].versions["churn-predictor"] = "2"
    try:
        r = _post(client, "/admin/reload", keys["admin"])
        assert r.status_code == 200, r.text
        assert r.json()["reload"]["models"]["churn-predictor"] == "serving version 2"
        tags = _post(client, "/tags", keys["marketing"], customer_ids=["c0001"]).json()
        versions = {t["tag_id"]: t["version"] for t in tags["results"][0]["tags"]}
        assert versions["churn_risk"] == "churn-predictor/2"
    finally:
        fakes.LAST["models"].versions["churn-predictor"] = "1"
        _post(client, "/admin/reload", keys["admin"])


def test_score_endpoint(client: TestClient, keys: dict[str, str]) -> None:
    body = {
        "customer": {
            "customer_id": "new-1",
            "signup_at": "2025-01-01T00:00:00Z",
            "attributes": {"region": "north"},
        },
        "events": [
            {"occurred_at": f"2026-05-2{d}T10:00:00", "event_type": "purchase", "amount": 12.5}
            for d in range(3)
        ],
        "as_of": "2026-06-01T00:00:00Z",
    }
    r = client.post("/score", json=body, headers=_auth(keys["marketing"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["features"]["frequency_orders"] == 3.0
    assert {t["tag_id"] for t in out["tags"]} == {"old_customer", "churn_risk", "predicted_value"}


@pytest.mark.parametrize(
    "patch",
    [
        {"events": [{"occurred_at": "yesterday", "event_type": "purchase"}]},
        {"events": [{"occurred_at": "2026-01-01", "event_type": "purchase", "amount": -3}]},
        {"customer": {"customer_id": "x"}},
        {"customer": {"customer_id": "x", "signup_at": "2025-01-01", "name": "Ann"}},
    ],
)
def test_score_bad_input_is_400(client: TestClient, keys: dict[str, str], patch: dict) -> None:
    body = {"customer": {"customer_id": "x", "signup_at": "2025-01-01"}, "events": []} | patch
    r = client.post("/score", json=body, headers=_auth(keys["marketing"]))
    assert r.status_code == 400, r.text


def test_requests_are_audited_without_raw_ids(client: TestClient, keys: dict[str, str]) -> None:
    audit = fakes.LAST["audit"]
    before = len(audit.entries)
    _post(client, "/tags", keys["marketing"], customer_ids=["c0003"])
    _post(client, "/tags", None, customer_ids=["c0003"])
    new = audit.entries[before:]
    assert [e["action"] for e in new] == ["serve.tags", "serve.tags"]
    assert new[0]["actor"] == "crm"
    assert new[0]["n_customers"] == 1
    assert new[1]["actor"] == "anonymous"
    assert "refused" in new[1]["extra"]
    assert "c0003" not in repr(new)


def test_free_endpoints(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {"/tags", "/score", "/admin/reload", "/catalog", "/models"} <= set(spec["paths"])


def test_explain_over_http_filters_tags_and_features_by_role(
    client: TestClient, keys: dict[str, str]
) -> None:
    assert _post(client, "/explain", None, customer_ids=["c0001"]).status_code == 401
    r = _post(client, "/explain", keys["service"], customer_ids=["c0001", "ghost"])
    assert r.status_code == 200, r.text
    body = r.json()
    first, ghost = body["results"]
    assert {t["tag_id"] for t in first["tags"]} == {"old_customer", "churn_risk"}
    # Only features feeding a tag the role may see (old_customer reads frequency_orders).
    assert set(first["features"]) == {"frequency_orders"}
    assert ghost["found"] is False
    assert body["unknown_ids"] == ["ghost"]
    refused = _post(
        client, "/explain", keys["marketing"], customer_ids=["c0001"], tags=["age_band"]
    )
    assert refused.status_code == 403
    too_many = _post(
        client, "/explain", keys["marketing"], customer_ids=[f"c{i}" for i in range(1001)]
    )
    assert 400 <= too_many.status_code < 500
