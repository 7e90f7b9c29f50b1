"""Fixtures shared by the serving tests."""

from __future__ import annotations

import functools
from typing import Any

import pytest


@functools.cache
def build_tag_service_app() -> Any:
    """The service's ASGI app, built once per process (any test package may use it).

    BentoML registers its Prometheus metrics when the app is built, and a second build
    in the same process is refused; each ``TestClient(app)`` still creates a fresh
    service instance, from the runtime factory active at that moment
    (``tests.serving.fakes.ACTIVE``: the fakes unless a test installs another).
    """
    from serving.service import make_service
    from serving.settings import load_settings
    from tests.serving.fakes import active_runtime

    return make_service(active_runtime, load_settings()).to_asgi()


@pytest.fixture(scope="session")
def tag_service_app() -> Any:
    """The service's ASGI app, built once per process (see :func:`build_tag_service_app`)."""
    return build_tag_service_app()
