"""Serving tags: the BentoML tag service (batch tagging runs live in ``scoring.batch``).

The service itself (``serving.service``) is imported by ``bentoml serve``, not here, so
that importing the package stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported from their modules on first use: `import serving.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "Caller": "serving.access",
    "MAX_CUSTOMERS_PER_REQUEST": "serving.config",
    "ServingConfig": "serving.config",
    "BadRequest": "serving.errors",
    "Forbidden": "serving.errors",
    "HttpError": "serving.errors",
    "ModelLoadError": "serving.errors",
    "PayloadTooLarge": "serving.errors",
    "ServingError": "serving.errors",
    "ServingNotFound": "serving.errors",
    "Unauthorized": "serving.errors",
    "ApiKey": "serving.keys",
    "ApiKeyStore": "serving.keys",
    "Snapshot": "serving.rendering",
    "ServingRuntime": "serving.runtime",
    "ServingSettings": "serving.settings",
    "load_settings": "serving.settings",
    "ServingState": "serving.state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
