"""Tier 1b: the BentoML service class instantiated directly (no HTTP stack)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from serving.keys import ApiKeyStore


def _ctx(headers: dict[str, str]) -> Any:
    return SimpleNamespace(
        request=SimpleNamespace(headers={k.lower(): v for k, v in headers.items()}),
        response=SimpleNamespace(status_code=200),
    )


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    key = ApiKeyStore(tmp_path / "keys.json").add("crm", "marketing")
    monkeypatch.setenv("TAGSMITH_RUNTIME_FACTORY", "tests.serving.fakes:build_fake_runtime")
    monkeypatch.setenv("TAGSMITH_FAKE_KEYS", str(tmp_path / "keys.json"))
    from serving.service import TagService

    svc = TagService()
    yield svc, key
    svc.shutdown()


def test_instance_serves_tags(service: tuple[Any, str]) -> None:
    svc, key = service
    ctx = _ctx({"Authorization": f"Bearer {key}"})
    response = asyncio.run(svc.tags(customer_ids=["c0001", "zz"], ctx=ctx))
    body = json.loads(response.body)
    assert body["unknown_ids"] == ["zz"]
    assert {t["source"] for t in body["results"][0]["tags"]} == {"rule", "model"}
    assert ctx.response.status_code == 200


def test_instance_refuses_without_key(service: tuple[Any, str]) -> None:
    svc, _ = service
    ctx = _ctx({})
    response = asyncio.run(svc.tags(customer_ids=["c0001"], ctx=ctx))
    assert ctx.response.status_code == 401
    assert response.status_code == 401
    assert "API key" in json.loads(response.body)["error"]


def test_make_runtime_names_a_bad_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.errors import ServingError
    from serving.service import make_runtime

    monkeypatch.setenv("TAGSMITH_RUNTIME_FACTORY", "no.such.module:build")
    with pytest.raises(ServingError, match=r"no\.such\.module"):
        make_runtime()
    monkeypatch.setenv("TAGSMITH_RUNTIME_FACTORY", "os:getcwd")
    with pytest.raises(ServingError, match="ServingRuntime"):
        make_runtime()
