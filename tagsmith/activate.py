"""Activation wired to a project: definitions, outbox, dispatcher, and the hook after a run.

The ``activation`` package takes stores and settings as arguments; this module builds
them from a :class:`~tagsmith.project.Project` for the CLI (``tagsmith triggers ...``,
``tagsmith tags run``) and the service.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from activation.definitions import CheckResult, Definitions, check_definitions, load_definitions
from activation.dispatcher import Activation, Dispatcher, DispatchReport
from activation.errors import ActivationError, DispatcherBusy
from features.consent import allowed_for
from serving.runtime import ReloadResult, ServingRuntime
from tags.errors import TagsError
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


def activation_of(project: Project) -> Activation:
    """The stores, definitions and settings a dispatcher of ``project`` works with."""
    return Activation(
        store=project.tag_store(),
        outbox=project.outbox(),
        history=project.trigger_history(),
        catalogue=project.catalogue(),
        # Triggers act in the dispatcher, for their stored role: never the CLI's owner.
        policy=project.service_policy(),
        audit=project.audit_log(),
        root=project.root,
        lock_path=project.activation_lock_path,
        config=project.config.activation,
        consent=allowed_for(project.consent()),
    )


def check_project_definitions(
    project: Project, *, definitions: Definitions | None = None
) -> tuple[Definitions, CheckResult]:
    """The project's ``triggers/*.yaml`` and their cross-checks (catalogue, policy, audiences)."""
    defs = definitions if definitions is not None else load_definitions(project.triggers_dir)
    audiences = {name: saved.expression for name, saved in project.audiences().list().items()}
    check = check_definitions(
        defs,
        catalogue=project.catalogue(),
        policy=project.service_policy(),
        audiences=audiences,
        environ=os.environ,
    )
    return defs, check


def transitions_position(project: Project) -> int:
    """The tag store's last transition seq (0 without a store)."""
    return TransitionLog(project.tag_store()).last_seq()


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


def after_run(project: Project) -> AfterRun:
    """Fire the applied triggers on what the run recorded, then try each delivery once.

    Nothing is passed from the run: the dispatcher reads the transitions recorded since
    its cursor, so live changes and earlier undelivered work go out too. Retries are left
    to a running dispatcher (``tagsmith triggers run`` or the service).
    """
    if not project.trigger_history().versions():
        return AfterRun(None, False, "")
    cfg = project.config.activation
    dispatcher = Dispatcher(activation_of(project))
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
    waiting = project.outbox().open_count()
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
    """

    def __init__(self, project: Project) -> None:
        self.project = project
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
                Dispatcher(activation_of(self.project)).run(stop=self._stop, lock_wait_s=0.0)
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
