"""What the console needs from a project, handed in by the wiring (``tagsmith``).

The console imports no wiring: :class:`ConsoleContext` carries the project's catalogue,
policy, stores, audit sink, API keys and model operations, built by the ``tagsmith``
package from the one ``Project`` object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from console.access import AuditSink
from console.config import ConsoleConfig
from console.models import ModelOps
from explain.profile import CustomerProfile
from serving.keys import ApiKey
from tags.policy import AccessPolicy
from tags.segments import AudienceBook
from tags.store import TagStore

__all__ = ["ConsoleContext", "KeyDirectory"]


class KeyDirectory(Protocol):
    """The service's API keys (``serving.keys.ApiKeyStore``)."""

    def verify(self, presented: str | None) -> ApiKey | None:
        """The stored key matching a presented key, or ``None``."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """Every stored key (re-read when the file changed)."""
        ...


@dataclass(frozen=True)
class ConsoleContext:
    """A project as the console sees it.

    Attributes:
        project_name: Shown in the page header.
        catalogue: The tag catalogue (``tags.catalogue.Catalogue``).
        policy: The access policy.
        tag_store: The tag store.
        audiences: Saved audiences.
        audit: Where every read and action is recorded (written off the request path).
        keys: The service's API keys (sign-in).
        secret: Random secret the session cookies and customer references derive from.
        hash_ids: Customer ids -> their keyed hashes in the audit log: the tag service's
            own function, so one search of the log finds every read of a customer.
        config: The ``console`` section of ``tagsmith.yaml``.
        share_shift_threshold: Coverage share shift that flags a value.
        models: Registry and promotion functions (``None``: no models page actions).
        model_tags: Registered model name -> catalogued tag it produces.
        explain: (customer id, tags the viewer may see, as-of) -> the customer's
            profile with every tag's why (``explain.CustomerProfile``); ``None``: the
            customer page names only the rule case or model band.
    """

    project_name: str
    catalogue: Any
    policy: AccessPolicy
    tag_store: TagStore
    audiences: AudienceBook
    audit: AuditSink
    keys: KeyDirectory
    secret: bytes
    hash_ids: Callable[[list[str]], list[str]]
    config: ConsoleConfig = field(default_factory=ConsoleConfig)
    share_shift_threshold: float = 0.05
    models: ModelOps | None = None
    model_tags: Mapping[str, str] = field(default_factory=dict)
    explain: Callable[[str, frozenset[str], Any], CustomerProfile] | None = None
