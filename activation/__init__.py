"""Activation: triggers, audience syncs and destinations, fed by the tag store's transitions.

Triggers fire when a customer enters or leaves an audience expression, judged on the
transitions recorded in the tag store (``tags.transitions``) from a durable cursor;
audience syncs keep a list destination's copy of a saved audience in step. Deliveries
go through a durable SQLite outbox to signed webhooks (batching, retries with backoff
and jitter, ``Retry-After``, dead letters, rate limits) or to file drops. Definitions
are governed like tags: YAML, plan, apply, versions, role bounds, audit.

Depends on ``tags`` (and below) only.
"""

from __future__ import annotations

from activation.config import ActivationConfig
from activation.definitions import (
    AudienceSync,
    Definitions,
    FileDestination,
    Trigger,
    WebhookDestination,
    check_definitions,
    load_definitions,
)
from activation.dispatcher import Activation, Dispatcher, DispatchReport
from activation.errors import (
    ActivationError,
    DefinitionError,
    DeliveryError,
    DispatcherBusy,
    OutboxError,
    PlanRefused,
)
from activation.outbox import Outbox
from activation.signing import sign, signature_headers, verify_signature
from activation.versions import AppliedVersion, Plan, TriggerHistory

__all__ = [
    "Activation",
    "ActivationConfig",
    "ActivationError",
    "AppliedVersion",
    "AudienceSync",
    "DefinitionError",
    "Definitions",
    "DeliveryError",
    "DispatchReport",
    "Dispatcher",
    "DispatcherBusy",
    "FileDestination",
    "Outbox",
    "OutboxError",
    "Plan",
    "PlanRefused",
    "Trigger",
    "TriggerHistory",
    "WebhookDestination",
    "check_definitions",
    "load_definitions",
    "sign",
    "signature_headers",
    "verify_signature",
]
