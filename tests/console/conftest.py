"""Fixtures of the console tests: one project per module, an in-process app per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.console.project import ConsoleProject, build_console_project


@pytest.fixture(autouse=True)
def _mlflow_env_restored() -> Iterator[None]:
    """Promotions load models through ``ModelRegistry.load``, which points MLflow's
    process-wide URIs (``MLFLOW_TRACKING_URI``) at the project and leaves them so; put the
    environment back, so later tests in this process see what they started with."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def console_template(tmp_path_factory: pytest.TempPathFactory) -> ConsoleProject:
    """The project, built once per test process (read-only: tests copy it)."""
    return build_console_project(tmp_path_factory.mktemp("console") / "proj")


def _copy(template: ConsoleProject, root: Path) -> ConsoleProject:
    from tagsmith.project import Project

    shutil.copytree(template.project.root, root)
    return ConsoleProject(
        project=Project.load(root), keys=template.keys, customer_ids=template.customer_ids
    )


def _started(project: ConsoleProject) -> Iterator[TestClient]:
    from console.app import create_app
    from tagsmith.console_app import build_console_context

    app = create_app(build_console_context(project.project))
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def module_project(
    console_template: ConsoleProject, tmp_path_factory: pytest.TempPathFactory
) -> ConsoleProject:
    """A copy of the project shared by one test module (tests append audit entries)."""
    return _copy(console_template, tmp_path_factory.mktemp("console-module") / "proj")


@pytest.fixture(scope="module")
def module_client(module_project: ConsoleProject) -> Iterator[TestClient]:
    """The console app on the module's copy, started once per module."""
    yield from _started(module_project)


@pytest.fixture
def console_project(module_project: ConsoleProject) -> ConsoleProject:
    """The project behind :func:`client`."""
    return module_project


@pytest.fixture
def client(module_client: TestClient) -> TestClient:
    """The module's console app, with no cookies (signed out) at the start of each test."""
    module_client.cookies.clear()
    return module_client


@pytest.fixture
def own_project(console_template: ConsoleProject, tmp_path: Path) -> ConsoleProject:
    """A private copy, for tests that change keys, audiences or aliases."""
    return _copy(console_template, tmp_path / "proj")


@pytest.fixture
def own_client(own_project: ConsoleProject) -> Iterator[TestClient]:
    """The console app on a private copy."""
    yield from _started(own_project)


def sign_in(client: TestClient, key: str) -> None:
    """Sign ``client`` in with an API key through the real form."""
    page = client.get("/ui/login")
    assert page.status_code == 200
    import re

    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/ui/login",
        data={"token": token.group(1), "key": key, "next": "/ui/catalogue"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
