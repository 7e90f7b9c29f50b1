"""Activation wired to a project: definitions, outbox, dispatcher, and the hook after a run.

The ``activation`` package takes stores and settings as arguments; this module builds
them from a :class:`~tagsmith.project.Project` for the CLI (``tagsmith triggers ...``,
``tagsmith tags run``) and the service.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activation.definitions import CheckResult, Definitions, check_definitions, load_definitions
from activation.dispatcher import Activation, Dispatcher, DispatchReport
from activation.errors import ActivationError, DispatcherBusy
from activation.outbox import Outbox
from activation.versions import TriggerHistory
from serving.runtime import ReloadResult, ServingRuntime
from tags.audit import AuditLog
from tags.errors import TagsError
from tags.policy import AccessPolicy
from tags.segments import AudienceBook
from tags.store import TagStore
from tags.transitions import TransitionLog
from tagsmith.project import Project

__all__ = [
    "AfterRun",
    "DispatcherThread",
    "HostedRuntime",
    "activation_of",
    "after_run",
    "check_project_definitions",
    "transitions_position",
]

log = logging.getLogger("tagsmith.activation")


def activation_of(project: Project, catalogue: Any) -> Activation:
    """The stores, definitions and settings a dispatcher of ``project`` works with."""
    return Activation(
        store=TagStore(project.tag_store_path),
        outbox=Outbox(project.outbox_path),
        history=TriggerHistory(project.trigger_versions_dir),
        catalogue=catalogue,
        policy=AccessPolicy.load(project.policy_path),
        audit=AuditLog(project.audit_log_path),
        root=project.root,
        lock_path=project.activation_lock_path,
        config=project.config.activation,
    )


def check_project_definitions(
    project: Project, catalogue: Any, *, definitions: Definitions | None = None
) -> tuple[Definitions, CheckResult]:
    """The project's ``triggers/*.yaml`` and their cross-checks (catalogue, policy, audiences)."""
    defs = definitions if definitions is not None else load_definitions(project.triggers_dir)
    audiences = {
        name: saved.expression
        for name, saved in AudienceBook(project.audiences_path).list().items()
    }
    check = check_definitions(
        defs,
        catalogue=catalogue,
        policy=AccessPolicy.load(project.policy_path),
        audiences=audiences,
        environ=os.environ,
    )
    return defs, check


def transitions_position(project: Project) -> int:
    """The tag store's last transition seq (0 without a store)."""
    return TransitionLog(TagStore(project.tag_store_path)).last_seq()


@dataclass(frozen=True)
class AfterRun:
    """What the hook after ``tags run`` did.

    Attributes:
        report: The dispatcher pass (None when another dispatcher holds the lock or
            no trigger or sync is applied).
        busy: A running dispatcher will deliver instead.
        message: One line for the user.
    """

    report: DispatchReport | None
    busy: bool
    message: str


def after_run(project: Project, catalogue: Any) -> AfterRun:
    """Fire the applied triggers on what the run recorded, then try each delivery once.

    Nothing is passed from the run: the dispatcher reads the transitions recorded since
    its cursor, so live changes and earlier undelivered work go out too. Retries are left
    to a running dispatcher (``tagsmith triggers run`` or the service).
    """
    history = TriggerHistory(project.trigger_versions_dir)
    if not history.versions():
        return AfterRun(None, False, "")
    cfg = project.config.activation
    dispatcher = Dispatcher(activation_of(project, catalogue))
    try:
        report = dispatcher.run(
            until="idle" if cfg.deliver_after_run else "forever",
            max_seconds=cfg.deliver_after_run_s if cfg.deliver_after_run else 0.0,
        )
    except DispatcherBusy:
        return AfterRun(None, True, "triggers: a running dispatcher delivers this run's events")
    except (ActivationError, TagsError) as exc:
        return AfterRun(
            None, False, f"triggers: not fired now ({exc}); 'tagsmith triggers run' retries"
        )
    outbox = Outbox(project.outbox_path)
    waiting = outbox.open_count()
    outbox.close()
    fired = sum(report.fired.values())
    parts = [f"{fired:,} fired", f"{report.delivered:,} delivered"]
    if report.dead:
        parts.append(f"{report.dead:,} dead letters")
    if waiting:
        parts.append(f"{waiting:,} waiting for a retry ('tagsmith triggers run' delivers them)")
    return AfterRun(report, False, "triggers: " + ", ".join(parts))


class DispatcherThread:
    """The dispatcher loop on a background thread (hosted by the service).

    ``start`` returns at once; ``stop`` asks the loop to finish its in-flight attempts
    and waits for it. While another process holds the dispatcher lock, the thread waits
    for it (checking every few seconds) instead of failing.

    Args:
        project: The project.
        catalogue: Loads the tag catalogue (again after a failed loop).
    """

    def __init__(self, project: Project, catalogue: Callable[[], Any]) -> None:
        self.project = project
        self._catalogue = catalogue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="tagsmith-dispatcher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                activation = activation_of(self.project, self._catalogue())
                Dispatcher(activation).run(stop=self._stop, lock_wait_s=0.0)
            except DispatcherBusy:
                self._stop.wait(5.0)
            except Exception:  # the host must outlive any one failed loop
                log.exception("dispatcher loop failed; restarting in 5 s")
                self._stop.wait(5.0)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None


class HostedRuntime(ServingRuntime):
    """The service runtime hosting the trigger dispatcher loop (``activation.in_service``).

    ``serving`` knows nothing of activation: the loop starts after the runtime's first
    load and stops before the runtime does.

    Args:
        dispatcher: The loop to host.
        **kwargs: :class:`~serving.runtime.ServingRuntime`'s arguments.
    """

    def __init__(self, *, dispatcher: DispatcherThread, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dispatcher = dispatcher

    def start(self) -> ReloadResult:
        """Load everything, then start the dispatcher loop."""
        result = super().start()
        self.dispatcher.start()
        return result

    def stop(self) -> None:
        """Stop the dispatcher loop (in-flight attempts finish), then the runtime."""
        self.dispatcher.stop()
        super().stop()
