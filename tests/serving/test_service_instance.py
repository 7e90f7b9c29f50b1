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
    monkeypatch.setenv("TAGSMITH_FAKE_KEYS", str(tmp_path / "keys.json"))
    from serving.service import make_service
    from serving.settings import load_settings
    from tests.serving.fakes import build_fake_runtime

    svc = make_service(build_fake_runtime, load_settings())()
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


def test_a_factory_that_returns_no_runtime_is_refused() -> None:
    import os

    from serving.errors import ServingError
    from serving.service import make_service
    from serving.settings import load_settings

    service = make_service(os.getcwd, load_settings())  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="ServingRuntime"):
        service()
