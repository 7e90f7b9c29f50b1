"""Fixtures of the hostile suite."""

from __future__ import annotations

from typing import Any

import pytest

from tests.hostile.service_fixture import service
from tests.serving.conftest import build_tag_service_app

__all__ = ["service", "tag_service_app"]


@pytest.fixture(scope="session")
def tag_service_app() -> Any:
    """The tag service's ASGI app, shared with tests/serving (one build per process)."""
    return build_tag_service_app()
