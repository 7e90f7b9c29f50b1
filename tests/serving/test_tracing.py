"""``serving.tracing``: off by default, BentoML's OpenTelemetry middleware starts no span.

Unsampled spans record nothing at BentoML's default sample rate of 0, yet cost event-loop
CPU on every request (~0.6 ms per ``POST /score``); the tests drive the real HTTP stack
in process and count the spans the middleware starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import opentelemetry.instrumentation.asgi as otel_asgi
import pytest
from opentelemetry.util.http import ExcludeList
from starlette.testclient import TestClient

from serving.config import ServingConfig
from serving.keys import ApiKeyStore
from serving.service import UNTRACED_URLS, make_service
from serving.settings import load_settings
from tests.serving.fakes import active_runtime


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL paths of the server spans the tracing middleware starts from now on."""
    started: list[str] = []
    real = otel_asgi._start_internal_or_server_span

    def counted(*args: Any, **kwargs: Any) -> Any:
        scope = kwargs.get("context_carrier") or {}
        started.append(str(scope.get("path")))
        return real(*args, **kwargs)

    monkeypatch.setattr(otel_asgi, "_start_internal_or_server_span", counted)
    return started


@pytest.fixture
def client(
    tmp_path_factory: pytest.TempPathFactory, tag_service_app: Any
) -> Iterator[tuple[TestClient, str]]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    key = ApiKeyStore(path).add("crm", "marketing")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGSMITH_FAKE_KEYS", str(path))
    mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
    with TestClient(tag_service_app) as test_client:
        yield test_client, key
    mp.undo()


def test_tracing_is_off_by_default() -> None:
    assert ServingConfig().tracing is False
    assert load_settings().tracing is False


def test_requests_start_no_span_when_tracing_is_off(
    client: tuple[TestClient, str], spans: list[str]
) -> None:
    test_client, key = client
    headers = {"Authorization": f"Bearer {key}"}
    answers = [
        test_client.post("/tags", json={"customer_ids": ["c1"]}, headers=headers),
        test_client.post("/score", json={"customer": {}}, headers=headers),  # 400
        test_client.get("/catalog", headers=headers),
        test_client.post("/tags", json={"customer_ids": ["c1"]}),  # 401
    ]
    assert [a.status_code for a in answers] == [200, 400, 200, 401], [a.text for a in answers]
    assert spans == []


def test_every_url_is_excluded_when_tracing_is_off() -> None:
    excluded = ExcludeList(list(UNTRACED_URLS))
    for url in ("http://127.0.0.1:3000/score", "https://tags.example/tags?x=1", "/readyz"):
        assert excluded.url_disabled(url), url


def test_tracing_on_leaves_bentoml_tracing_config_alone() -> None:
    off = make_service(active_runtime, load_settings())
    on = make_service(active_runtime, load_settings(ServingConfig(tracing=True)))
    assert off.config["tracing"] == {"excluded_urls": list(UNTRACED_URLS)}
    assert "tracing" not in on.config
