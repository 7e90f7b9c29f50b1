"""The service's OpenAPI document, completed where BentoML's generator stops.

BentoML 1.4 builds ``/docs.json`` from the API signatures but has no hook for security
schemes, examples or responses other than its own 400/404/500, and it reports version
"None" for a service not built into a Bento. :class:`OpenApiMiddleware` rewrites that
one response on its way out: the API key schemes (Swagger's *Authorize* button), the
statuses each operation really answers (401, 403, 413, 429) with the
``{"error", "status"}`` body, request and response examples, and the package version.
Nothing else passes through it, so requests to the API are untouched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OpenApiMiddleware", "complete_spec", "package_version"]

SPEC_PATH = "/docs.json"
ERROR_SCHEMA = "TagsmithError"
# The two headers serving.access.ServingAccess.authenticate reads.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "BearerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key as 'Authorization: Bearer KEY' "
        "(create one with 'tagsmith serve keys add NAME --role ROLE').",
    },
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key in an 'X-API-Key' header.",
    },
}
_ERRORS = {
    401: "No API key, or one that is unknown or revoked.",
    403: "The key's role may not take this action or see a tag it names (audited).",
    413: "The request body is larger than serving.max_body_bytes.",
    429: "Ingestion is behind tagging: retry after the Retry-After header's seconds.",
}
_EXAMPLE_ERROR = {
    "error": "Expected an API key in an 'Authorization: Bearer KEY' ...",
    "status": 401,
}
_IDS = ["C000123", "C000456"]
EXAMPLES: dict[str, dict[str, Any]] = {
    "/tags": {
        "request": {"customer_ids": _IDS, "categories": ["lifecycle", "value"]},
        "response": {
            "as_of": "2024-12-31",
            "run_id": "run-2024-12-31T00:00:00Z",
            "model_versions": {"churn-predictor": "3"},
            "results": [
                {
                    "customer_id": "C000123",
                    "found": True,
                    "tags": [
                        {
                            "display_name": "Lifecycle stage",
                            "tag_id": "lifecycle_stage",
                            "value": "active",
                            "score": None,
                            "source": "rule",
                            "version": "lifecycle_stage@1",
                            "as_of": "2024-12-31",
                        }
                    ],
                },
                {"customer_id": "C000456", "found": False},
            ],
            "unknown_ids": ["C000456"],
        },
    },
    "/explain": {"request": {"customer_ids": ["C000123"], "categories": ["lifecycle"]}},
    "/score": {
        "request": {
            "customer": {"customer_id": "NEW-1", "signup_at": "2024-06-01T00:00:00Z"},
            "events": [
                {"occurred_at": "2024-06-03T10:00:00Z", "event_type": "purchase", "amount": 42.5}
            ],
            "as_of": "2024-07-01T00:00:00Z",
        }
    },
    "/events": {
        "request": {
            "events": [
                {
                    "event_id": "shop-981",
                    "customer_id": "C000123",
                    "occurred_at": "2024-12-31T09:30:00Z",
                    "event_type": "purchase",
                    "amount": 19.9,
                }
            ]
        }
    },
}
# Statuses each operation can answer beyond 200 and BentoML's 400/404/500.
_STATUSES = {
    "/tags": (401, 403, 413),
    "/explain": (401, 403, 413),
    "/score": (401, 403, 413),
    "/events": (401, 403, 413, 429),
    "/admin/reload": (401, 403, 413),
    "/catalog": (401, 403),
    "/models": (401, 403),
}


def package_version() -> str:
    """The installed ``tagsmith`` distribution's version (a source checkout: 0.0.0+source)."""
    try:
        return version("tagsmith")
    except PackageNotFoundError:
        return "0.0.0+source"


def _error_response(status: int) -> dict[str, Any]:
    example = dict(_EXAMPLE_ERROR, status=status) if status != 401 else _EXAMPLE_ERROR
    return {
        "description": _ERRORS[status],
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
                "example": example,
            }
        },
    }


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    responses = operation.setdefault("responses", {})
    for status in _STATUSES[path]:
        responses.setdefault(str(status), _error_response(status))
    examples = EXAMPLES.get(path, {})
    if "request" in examples:
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if isinstance(body, dict):
            body["example"] = examples["request"]
    if "response" in examples:
        ok = responses.get("200", {}).get("content", {}).get("application/json")
        if isinstance(ok, dict):
            ok["example"] = examples["response"]


def complete_spec(spec: dict[str, Any], *, version: str) -> dict[str, Any]:
    """``spec`` (BentoML's document) with security, error responses, examples, version.

    Args:
        spec: The OpenAPI document BentoML generated (changed in place and returned).
        version: The version to report (the tagsmith package's).
    """
    info = spec.setdefault("info", {})
    info["version"] = version
    info["contact"] = {"name": "Tagsmith", "url": "https://github.com/tagsmith/tagsmith"}
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {})[ERROR_SCHEMA] = {
        "title": ERROR_SCHEMA,
        "type": "object",
        "description": "Every refusal of the tag service: a clear message and the status.",
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["error", "status"],
    }
    paths: Mapping[str, Any] = spec.get("paths", {})
    for path, item in paths.items():
        if path not in _STATUSES or not isinstance(item, dict):
            continue  # infrastructure endpoints (/livez, /metrics, ...) need no key
        for method in ("get", "post"):
            if isinstance(item.get(method), dict):
                _complete_operation(path, item[method])
    return spec


class OpenApiMiddleware:
    """Completes the ``GET /docs.json`` answer with :func:`complete_spec`."""

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != SPEC_PATH:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._send(start, b"".join(chunks), send)

        await self.app(scope, receive, capture)

    async def _send(self, start: Message | None, body: bytes, send: Send) -> None:
        assert start is not None  # ASGI: the start message comes before the body
        if start["status"] == 200:
            body = json.dumps(complete_spec(json.loads(body), version=self.version)).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
