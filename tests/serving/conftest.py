"""Fixtures shared by the serving tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tag_service_app() -> Any:
    """The service's ASGI app, built once per process.

    BentoML registers its Prometheus metrics when the app is built, and a second build
    in the same process is refused; each ``TestClient(app)`` still creates a fresh
    service instance, from the runtime factory active at that moment
    (``tests.serving.fakes.ACTIVE``: the fakes unless a test installs another).
    """
    from serving.service import make_service
    from serving.settings import load_settings
    from tests.serving.fakes import active_runtime

    return make_service(active_runtime, load_settings()).to_asgi()
