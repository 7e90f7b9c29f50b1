"""Serving tags: the BentoML tag service (batch tagging runs live in ``scoring.batch``).

The service itself (``serving.service``) is imported by ``bentoml serve``, not here, so
that importing the package stays cheap for the CLI.
"""

from __future__ import annotations

from serving.access import Caller
from serving.config import MAX_CUSTOMERS_PER_REQUEST, ServingConfig
from serving.errors import (
    BadRequest,
    Forbidden,
    HttpError,
    ModelLoadError,
    PayloadTooLarge,
    ServingError,
    ServingNotFound,
    Unauthorized,
)
from serving.keys import ApiKey, ApiKeyStore
from serving.rendering import Snapshot
from serving.runtime import ServingRuntime
from serving.settings import ServingSettings, load_settings
from serving.state import ServingState

__all__ = [
    "MAX_CUSTOMERS_PER_REQUEST",
    "ApiKey",
    "ApiKeyStore",
    "BadRequest",
    "Caller",
    "Forbidden",
    "HttpError",
    "ModelLoadError",
    "PayloadTooLarge",
    "ServingConfig",
    "ServingError",
    "ServingNotFound",
    "ServingRuntime",
    "ServingSettings",
    "ServingState",
    "Snapshot",
    "Unauthorized",
    "load_settings",
]
