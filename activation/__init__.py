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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported from their modules on first use: `import activation.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "ActivationConfig": "activation.config",
    "AudienceSync": "activation.definitions",
    "Definitions": "activation.definitions",
    "FileDestination": "activation.definitions",
    "Trigger": "activation.definitions",
    "WebhookDestination": "activation.definitions",
    "check_definitions": "activation.definitions",
    "load_definitions": "activation.definitions",
    "Activation": "activation.dispatcher",
    "Dispatcher": "activation.dispatcher",
    "DispatchReport": "activation.dispatcher",
    "ActivationError": "activation.errors",
    "DefinitionError": "activation.errors",
    "DeliveryError": "activation.errors",
    "DispatcherBusy": "activation.errors",
    "OutboxError": "activation.errors",
    "PlanRefused": "activation.errors",
    "Outbox": "activation.outbox",
    "sign": "activation.signing",
    "signature_headers": "activation.signing",
    "verify_signature": "activation.signing",
    "AppliedVersion": "activation.versions",
    "Plan": "activation.versions",
    "TriggerHistory": "activation.versions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
