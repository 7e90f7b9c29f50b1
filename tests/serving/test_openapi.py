"""``/docs.json`` as a newcomer opens it in Swagger (issue 21).

The document comes from the real service (the full HTTP stack in-process): API key
schemes (the *Authorize* button), the refusals each operation answers, examples that the
service itself accepts, and the package version instead of BentoML's "None".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import tagsmith
from serving.keys import ApiKeyStore
from serving.openapi import EXAMPLES, complete_spec

PROTECTED = ("/tags", "/explain", "/score", "/events", "/admin/reload", "/catalog", "/models")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tag_service_app: Any
) -> Iterator[tuple[TestClient, dict[str, Any], dict[str, str]]]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    store = ApiKeyStore(path)
    keys = {"marketing": store.add("crm", "marketing"), "admin": store.add("ops", "admin")}
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGSMITH_FAKE_KEYS", str(path))
    mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
    with TestClient(tag_service_app) as client:
        response = client.get("/docs.json")
        assert response.status_code == 200, response.text
        assert int(response.headers["content-length"]) == len(response.content)
        yield client, response.json(), keys
    mp.undo()


def _operation(spec: dict[str, Any], path: str) -> dict[str, Any]:
    item = spec["paths"][path]
    return item.get("post") or item["get"]


def test_version_is_the_package_version(served: tuple[TestClient, dict, dict]) -> None:
    _, spec, _ = served
    assert spec["info"]["version"] == tagsmith.__version__
    assert spec["info"]["version"] != "None"
    assert "BentoML" not in str(spec["info"].get("contact"))


def test_security_schemes_are_the_headers_the_service_reads(
    served: tuple[TestClient, dict, dict],
) -> None:
    client, spec, keys = served
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerKey"] == {**schemes["BearerKey"], "type": "http", "scheme": "bearer"}
    header = schemes["ApiKeyHeader"]
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "X-API-Key")
    for path in PROTECTED:
        assert _operation(spec, path)["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]
    assert "security" not in spec["paths"]["/livez"]["get"]
    # Both documented ways of presenting a key really work.
    body = {"customer_ids": ["c0001"]}
    bearer = client.post(
        "/tags", json=body, headers={"Authorization": f"Bearer {keys['marketing']}"}
    )
    api_key = client.post("/tags", json=body, headers={"X-API-Key": keys["marketing"]})
    assert bearer.status_code == api_key.status_code == 200


def test_refusals_are_documented_with_their_body(served: tuple[TestClient, dict, dict]) -> None:
    client, spec, keys = served
    error = spec["components"]["schemas"]["TagsmithError"]
    assert error["required"] == ["error", "status"]
    for path in PROTECTED:
        responses = _operation(spec, path)["responses"]
        expected = {"200", "401", "403"} | ({"413"} if "post" in spec["paths"][path] else set())
        assert expected <= set(responses), (path, sorted(responses))
        ref = responses["401"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/TagsmithError"
    assert "429" in _operation(spec, "/events")["responses"]
    # The service answers what the document says, in the documented shape.
    unauthorised = client.post("/tags", json={"customer_ids": ["c0001"]})
    refused = client.post(
        "/admin/reload", json={}, headers={"Authorization": f"Bearer {keys['marketing']}"}
    )
    too_big = client.post(
        "/tags",
        content=b'{"customer_ids": ["' + b"x" * 20_000_000 + b'"]}',
        headers={"Authorization": f"Bearer {keys['marketing']}"},
    )
    for response, status in ((unauthorised, 401), (refused, 403), (too_big, 413)):
        assert response.status_code == status, response.text
        assert set(response.json()) == set(error["properties"])


def test_examples_are_requests_the_service_accepts(served: tuple[TestClient, dict, dict]) -> None:
    client, spec, keys = served
    tags = _operation(spec, "/tags")
    assert (
        tags["requestBody"]["content"]["application/json"]["example"]
        == EXAMPLES["/tags"]["request"]
    )
    example = tags["responses"]["200"]["content"]["application/json"]["example"]
    assert set(example) == {"as_of", "run_id", "model_versions", "results", "unknown_ids"}
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    for path in ("/tags", "/explain", "/score"):
        request = _operation(spec, path)["requestBody"]["content"]["application/json"]["example"]
        answer = client.post(path, json=request, headers=headers)
        assert answer.status_code == 200, (path, answer.text)


def test_complete_spec_leaves_unknown_paths_alone() -> None:
    spec = {"paths": {"/livez": {"get": {"responses": {"200": {}}}}}}
    done = complete_spec(spec, version="1.2.3")
    assert done["info"]["version"] == "1.2.3"
    assert done["paths"]["/livez"] == {"get": {"responses": {"200": {}}}}
    assert "BearerKey" in done["components"]["securitySchemes"]
