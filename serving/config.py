"""The ``serving`` section of ``tagsmith.yaml``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
        tracing: BentoML's OpenTelemetry spans of each request (exporter and sample rate
            come from BentoML's own configuration). Off, its tracing middleware passes
            every request through: unsampled spans (BentoML's default sample rate is 0)
            still cost ~0.6 ms of event-loop CPU per ``POST /score`` and record nothing.
        tls_cert: PEM certificate (chain) file: with ``tls_key``, the service speaks
            HTTPS only (``tagsmith serve --tls-cert/--tls-key``, ``TAGSMITH_TLS_CERT``).
        tls_key: PEM private key file of ``tls_cert``.
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
    tracing: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ServingConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        for name in ("tls_cert", "tls_key"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{name} must name a readable PEM file; got {value!r}")
        return self
