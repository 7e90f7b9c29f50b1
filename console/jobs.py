"""Long actions (promotion re-scores a labelled window) run off the request, one page polls.

A promotion can take from seconds to minutes, longer than a request should be held
open. The form starts a :class:`Job` in a thread and redirects to its page, which
refreshes itself (a ``<meta http-equiv="refresh">``, so it works without JavaScript)
until the job is done and then shows the outcome.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Job", "JobBoard"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One long action.

    Attributes:
        id: Random id (in the job page's URL).
        kind: ``promote`` or ``rollback``.
        subject: What it acts on (the model name).
        owner: Key name of who started it (only they see its page).
        started_at: Unix time it started.
        finished_at: Unix time it ended (``None`` while running).
        result: What the action returned, JSON-ready (when it succeeded).
        error: The user-facing message (when it failed).
    """

    id: str
    kind: str
    subject: str
    owner: str
    started_at: float
    finished_at: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def running(self) -> bool:
        """Whether the job is still running."""
        return self.finished_at is None

    @property
    def seconds(self) -> float:
        """Seconds it ran (so far)."""
        return (self.finished_at or time.time()) - self.started_at


class JobBoard:
    """Runs jobs in threads and remembers the last ``keep`` of them.

    Args:
        user_errors: Exception types whose message is shown to the user as is; any other
            exception is logged and shown as an internal error (no traceback reaches the page).
        keep: How many finished jobs to remember.
    """

    def __init__(self, user_errors: tuple[type[Exception], ...], *, keep: int = 100) -> None:
        self.user_errors = user_errors
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(
        self, kind: str, subject: str, owner: str, work: Callable[[], dict[str, Any]]
    ) -> Job:
        """Start ``work`` in a thread; return the running job."""
        job = Job(secrets.token_urlsafe(12), kind, subject, owner, time.time())
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        threading.Thread(
            target=self._run, args=(job, work), name=f"console-{kind}", daemon=True
        ).start()
        return job

    def _run(self, job: Job, work: Callable[[], dict[str, Any]]) -> None:
        try:
            done = replace(job, result=work(), finished_at=time.time())
        except self.user_errors as exc:
            done = replace(job, error=str(exc), finished_at=time.time())
        except Exception:
            log.exception("Console job %s (%s) failed", job.kind, job.subject)
            done = replace(
                job,
                error="The action failed with an internal error; the service log has the details.",
                finished_at=time.time(),
            )
        with self._lock:
            self._jobs[job.id] = done

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job ``job_id`` if ``owner`` started it."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def wait(self, job_id: str, timeout_s: float = 60.0) -> Job | None:
        """Block until the job ends (tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self._jobs.get(job_id)
            if job is None or not job.running:
                return job
            time.sleep(0.05)
        return self._jobs.get(job_id)
