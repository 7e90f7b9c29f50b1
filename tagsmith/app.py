"""The tag service wired to a project: stores, registry, catalogue, policy, audit, keys.

``tagsmith serve`` runs ``bentoml serve tagsmith.app:TagService`` with
``TAGSMITH_PROJECT`` naming the project; a bare
``TAGSMITH_PROJECT=DIR bentoml serve tagsmith.app:TagService`` works the same.
``TagService`` is built on first access (so importing this module reads no project):
:func:`create_service` loads the project, takes the service settings from its
``serving`` section with ``TAGSMITH_*`` environment overrides
(:class:`serving.settings.ServingSettings`), and hands :func:`serving.service.make_service`
a factory of the runtime :func:`build_runtime` builds; then it mounts the web console
(:mod:`console`, at ``/ui``) into the same service unless ``console.enabled`` is off.
``serving`` never imports this package, nor the console.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from explain.rules import window_columns
from explain.words import FeatureWords
from features.catalog import feature_catalog
from features.events import prepare_events
from scoring.live import LiveScorer
from serving.auditing import QueuedAudit
from serving.errors import ServingError
from serving.explaining import CatalogueExplainer
from serving.runtime import ServingRuntime
from serving.settings import ServingSettings, load_settings
from serving.sources import (
    JsonAudit,
    LiveOnlineScorer,
    PolicyGovernance,
    TagStoreSnapshotSource,
)
from tagsmith import __version__
from tagsmith.activate import DispatcherThread, HostedRuntime
from tagsmith.champions import model_source
from tagsmith.live import ServiceIngest
from tagsmith.project import Project

__all__ = ["PROJECT_ENV", "SERVICE", "build_runtime", "create_service", "service_env"]

PROJECT_ENV = "TAGSMITH_PROJECT"
# What ``bentoml serve`` imports (``module:attribute``).
SERVICE = "tagsmith.app:TagService"


def build_runtime(project: Project, settings: ServingSettings | None = None) -> ServingRuntime:
    """The service runtime of ``project``.

    Args:
        project: The project served.
        settings: Service settings (default: the project's ``serving`` section with
            environment overrides).

    Raises:
        ServingError: The catalogue names no model tags to serve, or an environment
            setting is invalid.
    """
    settings = settings or load_settings(project.config.serving)
    catalogue = project.catalogue()
    policy = project.policy()
    source = model_source(project, alias=settings.alias, models=settings.models)
    spec = project.feature_spec()
    # Batch runs read the live events too, so the snapshot's features do.
    facts = project.facts()
    facts_config = project.config.facts

    rule_tags = [catalogue.compiled(t.id) for t in catalogue.active(sources=("fact", "rule"))]

    def snapshot_features(as_of: pd.Timestamp) -> pd.DataFrame:
        # Point-in-time: the features the tagging run of this as-of date computed, and
        # the event windows its rules counted (so POST /explain reads no raw events).
        prepared = prepare_events(facts.load_customers(), facts.load_events())
        features = prepared.build_features(as_of, spec=spec)
        windows = window_columns(rule_tags, features, prepared, as_of=as_of)
        return pd.concat([features, windows], axis=1) if len(windows.columns) else features

    # POST /score: the live path (arrays, no frame), built once: the spec's column plan
    # and the catalogue's rules compiled and type-checked against it.
    scorer = LiveOnlineScorer(LiveScorer(spec=spec, catalogue=catalogue, facts=facts_config))
    keys = project.api_keys()
    if not source.tags:
        raise ServingError(
            f"Expected the catalogue in {project.catalogue_dir} to hold active model tags "
            f"for the served models {settings.models}. Got none."
        )
    ingest = ServiceIngest(project) if project.config.streaming.enabled else None
    runtime_class: type[ServingRuntime] = ServingRuntime
    hosted: dict[str, Any] = {}
    if project.config.activation.in_service:
        # The service also hosts the trigger dispatcher loop (tagsmith.activate).
        runtime_class = HostedRuntime
        hosted = {"dispatcher": DispatcherThread(project)}
    return runtime_class(
        **hosted,
        models={name: tag.tag_id for name, tag in source.tags.items()},
        model_source=source,
        snapshot_source=TagStoreSnapshotSource(project.tag_store(), snapshot_features),
        governance=PolicyGovernance(catalogue, policy),
        audit=QueuedAudit(JsonAudit(project.audit_log())),
        verify_key=keys.verify,
        id_pepper=keys.pepper,
        watch_interval_s=settings.watch_interval_s,
        online_scorer=scorer,
        event_ingest=ingest,
        live_poll_s=project.config.streaming.live_poll_s,
        allows=lambda role, action: role in policy.roles and action in policy.roles[role].actions,
        explainer=CatalogueExplainer(catalogue, FeatureWords(feature_catalog(spec))),
    )


def create_service(project: Project | None = None) -> Any:
    """The BentoML tag service of ``project`` (default: the one in ``TAGSMITH_PROJECT``).

    Raises:
        ConfigError: No project there, or its config is invalid.
        ServingError: An environment setting is invalid.
    """
    from serving.service import make_service

    if project is None:
        project = Project.load(Path(os.environ.get(PROJECT_ENV, ".")))
    served = project
    settings = load_settings(served.config.serving)
    service = make_service(lambda: build_runtime(served, settings), settings, version=__version__)
    if served.config.console.enabled:
        from tagsmith.console_app import mount_console

        mount_console(service, served)
    return service


def service_env(project: Project, *, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a ``bentoml serve`` process serving ``project``."""
    import serving

    env = dict(os.environ if base is None else base)
    repo = str(Path(serving.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    env.update(
        {
            PROJECT_ENV: str(project.root),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    env.setdefault("BENTOML_HOME", str(project.data_dir / "serving" / "bentoml"))
    return env


def __getattr__(name: str) -> Any:
    # ``TagService`` is built on first access, for ``bentoml serve tagsmith.app:TagService``
    # (in every worker process): importing the module for its functions loads no project.
    if name == "TagService":
        service = create_service()
        globals()[name] = service
        return service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
