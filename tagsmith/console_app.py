"""The web console wired to a project, and mounted into the tag service.

:func:`tagsmith.app.create_service` calls :func:`mount_console`: the console app answers
beside the JSON endpoints, from one process, on one port, under the same API keys and
roles. The console reads the project's stores when the service's worker starts (the
app's lifespan), not when it is mounted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from console.app import create_app
from console.context import ConsoleContext
from explain.lookup import CustomerExplainer
from explain.profile import CustomerProfile
from serving.access import Access
from serving.auditing import QueuedAudit
from serving.sources import JsonAudit, PolicyGovernance
from tagsmith.champions import model_tags
from tagsmith.explaining import customer_explainer
from tagsmith.modelops import ProjectModelOps
from tagsmith.project import Project

__all__ = ["build_console_context", "mount_console"]


def build_console_context(project: Project) -> ConsoleContext:
    """The console's view of ``project``: catalogue, policy, stores, keys, model operations."""
    keys = project.api_keys()
    # The per-project secret of the key file: session cookies and customer references
    # derive their own keys from it, so a sign-in survives a restart of the service.
    pepper = keys.pepper
    catalogue = project.catalogue()
    audit = QueuedAudit(JsonAudit(project.audit_log()))
    # The tag service's access object, for its customer-id hashes in the audit log.
    access = Access(
        governance=PolicyGovernance(catalogue, project.policy()),
        audit=audit,
        verify_key=keys.verify,
        id_pepper=pepper,
    )
    return ConsoleContext(
        project_name=project.config.name,
        catalogue=catalogue,
        policy=project.policy(),
        tag_store=project.tag_store(),
        audiences=project.audiences(),
        audit=audit,
        keys=keys,
        secret=pepper,
        hash_ids=lambda ids: access.hash_ids(ids),
        config=project.config.console,
        share_shift_threshold=project.config.store.share_shift_threshold,
        models=ProjectModelOps(project),
        model_tags={name: tag.tag_id for name, tag in model_tags(catalogue).items()},
        explain=_explain(project),
    )


def _explain(project: Project) -> Callable[[str, frozenset[str], Any], CustomerProfile]:
    """The console's customer explanations: the CLI's explainer, built on first use."""
    made: list[CustomerExplainer] = []
    lock = threading.Lock()

    def explain(customer_id: str, visible: frozenset[str], as_of: Any) -> CustomerProfile:
        with lock:  # one explainer (and its model cache) shared by the worker's threads
            if not made:
                made.append(customer_explainer(project))
            return made[0].profile(customer_id, visible_tags=visible, as_of=as_of)

    return explain


def mount_console(service: Any, project: Project) -> None:
    """Mount the console of ``project`` into a BentoML service.

    The console's routes all live under ``/ui``; BentoML's mounts claim only the paths
    their app routes, so the service's JSON endpoints keep theirs.
    """
    service.mount_asgi_app(
        create_app(lambda: build_console_context(project)), path="/", name="console"
    )
