"""The ``serving`` section of ``tagsmith.yaml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_CUSTOMERS_PER_REQUEST", "ServingConfig"]

MAX_CUSTOMERS_PER_REQUEST = 1000


class ServingConfig(BaseModel):
    """How the tag service runs.

    Attributes:
        host: Interface to bind (loopback by default: put a TLS proxy in front to expose it).
        port: HTTP port.
        alias: Registry alias of the models to serve.
        models: Registered model names to serve (those without the alias are skipped).
        watch_interval_s: How often the service checks the registry aliases and the tag
            store for a new champion or a new tagging run (0 turns watching off).
        request_timeout_s: BentoML's per-request timeout. Short on purpose: timeout
            timers live as long as it, and long-lived garbage makes GC pauses longer.
        max_body_bytes: Largest request body accepted (413 above).
        workers: BentoML worker processes.
        access_log: BentoML's per-request access log lines (the audit log records every
            request anyway; off saves CPU per request).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    alias: str = "champion"
    models: list[str] = Field(default_factory=lambda: ["churn-predictor", "value-predictor"])
    watch_interval_s: float = Field(default=30.0, ge=0, le=86400)
    request_timeout_s: int = Field(default=5, ge=1, le=600)
    max_body_bytes: int = Field(default=2_000_000, ge=1024, le=100_000_000)
    workers: int = Field(default=1, ge=1, le=16)
    access_log: bool = False
