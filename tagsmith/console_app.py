"""The web console wired to a project, and how it is mounted into the tag service.

``tagsmith serve`` runs ``bentoml serve tagsmith.service:TagService``, the tag service
of ``serving.service`` with :func:`mount_console` applied: the console app answers
beside the JSON endpoints, from one process, on one port, under the same API keys and
roles. The console reads the project (from ``TAGSMITH_PROJECT``) when the service's
worker starts, not when a module is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from console.app import create_app
from console.context import ConsoleContext
from serving.auditing import QueuedAudit
from serving.sources import JsonAudit
from tagsmith.champions import model_tags
from tagsmith.modelops import ProjectModelOps
from tagsmith.project import Project
from tagsmith.serving_app import PROJECT_ENV

__all__ = ["CONSOLE_ENV", "build_console_context", "mount_console"]

CONSOLE_ENV = "TAGSMITH_CONSOLE"


def build_console_context(project: Project | None = None) -> ConsoleContext:
    """The console's view of ``project`` (default: the one in ``TAGSMITH_PROJECT``)."""
    if project is None:
        project = Project.load(Path(os.environ.get(PROJECT_ENV, ".")))
    keys = project.api_keys()
    # The per-project secret of the key file: session cookies and customer references
    # derive their own keys from it, so signing in survives a restart.
    pepper = keys.pepper
    catalogue = project.catalogue()
    return ConsoleContext(
        project_name=project.config.name,
        catalogue=catalogue,
        policy=project.policy(),
        tag_store=project.tag_store(),
        audiences=project.audiences(),
        audit=QueuedAudit(JsonAudit(project.audit_log())),
        keys=keys,
        secret=pepper,
        id_pepper=pepper,
        config=project.config.console,
        share_shift_threshold=project.config.store.share_shift_threshold,
        models=ProjectModelOps(project),
        model_tags={name: tag.tag_id for name, tag in model_tags(catalogue).items()},
    )


def mount_console(service: Any) -> None:
    """Mount the console into a BentoML service (unless ``TAGSMITH_CONSOLE=false``).

    The console's routes all live under ``/ui``; BentoML's mounts claim only the paths
    their app routes, so the service's JSON endpoints keep theirs. Mounting twice is a
    no-op.
    """
    if os.environ.get(CONSOLE_ENV, "true").lower() in ("0", "false", "no"):
        return
    if any(name == "console" for _, _, name in service.mount_apps):
        return
    service.mount_asgi_app(create_app(build_console_context), path="/", name="console")
