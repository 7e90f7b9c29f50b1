"""The tag service over a real project, in-process, with every log record captured.

Shared by the hostile service tests: a small real project (``tests.serving.project_fixture``:
facts, champions, one tagging run) served through the whole HTTP stack
(``TestClient`` over the BentoML ASGI app) with keys for every role, and a handler on
the root logger that keeps every record at every level, to search for customer data.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from features.store import FactStore
from serving.keys import ApiKeyStore
from tagsmith.app import build_runtime
from tests.serving import fakes, project_fixture
from tests.serving.project_fixture import ServedProject

ROLES = ("executive", "marketing", "service", "admin", "ingest")


@dataclass
class Service:
    client: TestClient
    served: ServedProject
    keys: dict[str, str]
    log: io.StringIO
    customer_ids: list[str] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(self, path: str, role: str = "marketing", **body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers(role))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tag_service_app: Any) -> Iterator[Service]:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
    served = project_fixture.build(tmp_path_factory.mktemp("hostile-svc") / "p", n_customers=120)
    store = ApiKeyStore(served.project.api_keys_path)
    keys = {role: store.add(f"{role}-key", role) for role in ROLES}
    mp.setitem(fakes.ACTIVE, "factory", lambda: build_runtime(served.project))
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ids = FactStore(served.project.facts_dir).load_customers()["customer_id"].astype(str)
    try:
        with TestClient(tag_service_app, raise_server_exceptions=False) as client:
            yield Service(client, served, keys, log, sorted(ids))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        mp.undo()
