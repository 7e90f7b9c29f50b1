"""The dispatcher: a bounded, stoppable loop from transitions to delivered batches.

Each turn it (1) judges transition groups recorded since the outbox cursor and queues
what they fire (:mod:`activation.ingest`), (2) runs audience syncs when a new snapshot
exists, (3) claims due batches per destination, within each destination's concurrency
and rate limit, and sends them on a small thread pool, and (4) records every outcome.
It runs until stopped (an :class:`threading.Event`), until a time bound, until nothing
is due now (``idle``: one attempt per queued batch, retries left for later) or until
nothing is left open (``drained``).

One dispatcher per project delivers at a time: it holds ``data/activation.lock`` (an OS
file lock, released when the process dies, even by ``kill -9``). On start it returns
batches a dead predecessor left ``sending`` to ``due``; they go again with the same body
and idempotency key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from filelock import FileLock, Timeout

from activation.config import ActivationConfig
from activation.definitions import FileDestination, WebhookDestination
from activation.delivery import Outcome, TokenBucket, WebhookSender
from activation.errors import DispatcherBusy
from activation.ingest import ACTOR, IngestReport, ingest
from activation.outbox import Attempt, Claimed, Outbox
from activation.syncs import SyncResult, run_sync
from activation.versions import AppliedVersion, TriggerHistory
from tags.access import TagReader
from tags.audit import AuditLog
from tags.errors import TagsError
from tags.policy import AccessPolicy
from tags.store import TagStore
from tags.transitions import TransitionLog

__all__ = ["Activation", "DispatchReport", "Dispatcher"]

log = logging.getLogger("activation")
UNTIL = ("forever", "idle", "drained")
# Finished attempts are audited and recorded together at most this often while busy.
FLUSH_S = 0.2


@dataclass
class Activation:
    """What a dispatcher works with (``tagsmith`` builds it from a project).

    Attributes:
        store: The tag store (its transition log is the source of work).
        outbox: The outbox.
        history: Applied trigger versions.
        catalogue: The tag catalogue.
        policy: The access policy.
        audit: The audit log.
        root: The project folder (base of relative file destinations).
        lock_path: The dispatcher lock file.
        config: Dispatcher settings.
        consent: For a purpose and customer ids, who may be used for it (None: consent
            is not checked); triggers and syncs leave the others out, counted.
    """

    store: TagStore
    outbox: Outbox
    history: TriggerHistory
    catalogue: Any
    policy: AccessPolicy
    audit: AuditLog
    root: Path
    lock_path: Path
    config: ActivationConfig = field(default_factory=ActivationConfig)
    consent: Callable[[str, Sequence[str]], np.ndarray] | None = None


@dataclass
class DispatchReport:
    """What a dispatcher run did.

    Attributes:
        stopped: Why it ended: ``stopped``, ``time``, ``idle`` or ``drained``.
        groups: Transition groups judged.
        fired: Trigger -> customers fired for.
        queued: Items queued (triggers and syncs).
        delivered: Items delivered.
        batches: Batches delivered.
        retries: Attempts that will be retried.
        dead: Items that became dead letters.
        syncs: Sync runs that did something.
        recovered: Batches found ``sending`` from a dead predecessor.
        seconds: Duration.
    """

    stopped: str = ""
    groups: int = 0
    fired: Counter[str] = field(default_factory=Counter)
    queued: int = 0
    delivered: int = 0
    batches: int = 0
    retries: int = 0
    dead: int = 0
    syncs: list[SyncResult] = field(default_factory=list)
    recovered: int = 0
    seconds: float = 0.0

    def add_ingest(self, report: IngestReport) -> None:
        """Fold in one ingest pass."""
        self.groups += report.groups
        self.queued += report.queued
        self.fired.update(report.fired)


class Dispatcher:
    """Delivers what the applied triggers and syncs queue.

    Args:
        activation: The stores, definitions and settings.
        environ: Where webhook secrets are read (default: the process environment).
        transport: httpx transport for every sender (tests only).
    """

    def __init__(
        self,
        activation: Activation,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.a = activation
        self._environ = environ
        self._transport = transport
        self._versions: list[AppliedVersion] = []
        self._versions_seen: tuple[int, ...] = ()
        self._versions_due = 0.0
        self._destinations: dict[str, WebhookDestination | FileDestination] = {}
        self._senders: dict[str, tuple[WebhookDestination, WebhookSender]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._store_mark: tuple[int, int, int, int] | None = None
        self._next_sync_check = 0.0
        self._inflight: dict[Future[Outcome], Claimed] = {}
        self._finished: list[Attempt] = []
        self._flush_at = 0.0
        self._per_dest: Counter[str] = Counter()

    # ------------------------------------------------------------------ lock
    @contextmanager
    def locked(self, *, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the project's dispatcher lock.

        Raises:
            DispatcherBusy: Another process holds it for longer than ``wait_s``.
        """
        self.a.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.a.lock_path), timeout=wait_s)
        try:
            lock.acquire()
        except Timeout as exc:
            raise DispatcherBusy(
                f"Another dispatcher holds {self.a.lock_path} (a running 'tagsmith triggers "
                "run' or the service): it delivers the queued events."
            ) from exc
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ definitions
    def versions(self) -> list[AppliedVersion]:
        """Every applied version (the folder is looked at once per poll interval)."""
        now = time.monotonic()
        if now >= self._versions_due:
            self._versions_due = now + self.a.config.poll_interval_s
            seen = tuple(self.a.history.versions())
            if seen != self._versions_seen:
                self._versions = self.a.history.all()
                self._versions_seen = seen
                self._destinations = {}
                for version in self._versions:
                    self._destinations.update(version.definitions.destinations)
        return self._versions

    def destinations(self) -> dict[str, WebhookDestination | FileDestination]:
        """Destinations by name: the newest definition of each, over all applied versions."""
        self.versions()
        return self._destinations

    def _sender(self, dest: WebhookDestination) -> WebhookSender:
        current = self._senders.get(dest.name)
        if current is None or current[0] != dest:
            if current is not None:
                current[1].close()
            sender = WebhookSender(dest, environ=self._environ, transport=self._transport)
            self._senders[dest.name] = (dest, sender)
            if dest.rate_limit_per_s:
                capacity = max(dest.rate_limit_per_s, float(dest.batch_size))
                self._buckets[dest.name] = TokenBucket(dest.rate_limit_per_s, capacity)
            else:
                self._buckets.pop(dest.name, None)
            return sender
        return current[1]

    # ------------------------------------------------------------------ steps
    def _store_changed(self) -> bool:
        marks = []
        for path in (
            self.a.store.path,
            self.a.store.path.with_name(self.a.store.path.name + ".wal"),
        ):
            try:
                st = path.stat()
                marks.extend([st.st_mtime_ns, st.st_size])
            except FileNotFoundError:
                marks.extend([0, 0])
        mark = (marks[0], marks[1], marks[2], marks[3])
        changed = mark != self._store_mark
        self._store_mark = mark
        return changed

    def ingest(self) -> IngestReport:
        """Queue what the groups recorded since the cursor fire (all of them)."""
        total = IngestReport(cursor=self.a.outbox.cursor())
        while True:
            report = ingest(
                TransitionLog(self.a.store),
                self.a.outbox,
                self.versions(),
                policy=self.a.policy,
                catalogue=self.a.catalogue,
                audit=self.a.audit,
                consent=self.a.consent,
            )
            total.groups += report.groups
            total.queued += report.queued
            total.cursor = report.cursor
            for name, n in report.fired.items():
                total.fired[name] = total.fired.get(name, 0) + n
            total.skipped.update(report.skipped)
            if report.groups == 0:
                return total

    def sync(self, *, force: bool = False, only: str | None = None) -> list[SyncResult]:
        """Run every active audience sync that has a new snapshot to send."""
        versions = self.versions()
        if not versions:
            return []
        latest = versions[-1]
        dests = self.destinations()
        out = []
        for name, sync in latest.definitions.syncs.items():
            if sync.status != "active" or (only is not None and name != only):
                continue
            reader = TagReader(
                self.a.store,
                self.a.catalogue,
                self.a.policy,
                self.a.audit,
                role=sync.role,
                actor=ACTOR,
            )
            result = run_sync(
                sync,
                version=latest.version,
                expression=latest.pinned[name],
                destination=dests[sync.destination],
                reader=reader,
                outbox=self.a.outbox,
                project_root=self.a.root,
                now=time.time(),
                force=force,
                consent=self.a.consent,
            )
            if result.kind != "skipped":
                log.info(
                    "sync %s run %d (%s): +%d -%d, %d members",
                    name,
                    result.run,
                    result.kind,
                    result.added,
                    result.removed,
                    result.members,
                )
            out.append(result)
        return out

    def _launch(self, pool: ThreadPoolExecutor) -> float | None:
        """Claim and submit what may go now; returns seconds until a rate limit frees."""
        wait_s: float | None = None
        for name, dest in sorted(self.destinations().items()):
            if not isinstance(dest, WebhookDestination):
                continue
            slots = min(
                dest.concurrency - self._per_dest[name],
                self.a.config.max_in_flight - len(self._inflight),
            )
            if slots <= 0:
                continue
            sender = self._sender(dest)  # (re)builds the destination's rate limit too
            bucket = self._buckets.get(name)
            allowance = None
            if bucket is not None:
                # Wait for a full batch's worth rather than trickle out tiny batches,
                # unless fewer events than that are waiting.
                allowance = bucket.available()
                if allowance < dest.batch_size and not 0 < self.a.outbox.pending(name) <= allowance:
                    wait_s = min(wait_s or 1.0, bucket.wait_s(dest.batch_size))
                    continue
            claimed = self.a.outbox.claim_many(
                name, batch_size=dest.batch_size, limit=slots, max_items=allowance
            )
            if not claimed and bucket is not None:
                # A retry larger than the allowance waits for enough tokens.
                wait_s = min(wait_s or 1.0, bucket.wait_s(dest.batch_size))
            for batch in claimed:
                if bucket is not None:
                    bucket.take(batch.n_items)
                self._inflight[pool.submit(sender.send, batch)] = batch
                self._per_dest[name] += 1
        return wait_s

    def _harvest(self) -> None:
        """Move finished attempts out of flight (their slots free up at once)."""
        for future in [f for f in self._inflight if f.done()]:
            claimed = self._inflight.pop(future)
            self._per_dest[claimed.destination] -= 1
            try:
                outcome = future.result()
            except Exception as exc:  # a bug in sending must not lose the batch
                outcome = Outcome(
                    "retry", None, f"sender failed ({type(exc).__name__})", 0.0, time.time() + 5.0
                )
            self._finished.append(
                Attempt(
                    claimed,
                    outcome.outcome,
                    outcome.status,
                    outcome.error,
                    outcome.duration_ms,
                    outcome.next_attempt_at,
                )
            )

    def _flush(self, report: DispatchReport, *, force: bool = False) -> None:
        """Audit, then record, the finished attempts: one audit write, one transaction.

        Outcomes are written every ``FLUSH_S`` (or when nothing is in flight), so a busy
        destination costs a few ``fsync`` calls per second rather than one per request.
        Until written, a batch stays ``sending``; a crash then sends it again (same key).
        """
        if not self._finished:
            return
        now = time.monotonic()
        if not force and self._inflight and now < self._flush_at:
            return
        attempts, self._finished = self._finished, []
        self._flush_at = now + FLUSH_S
        entries = [e for a in attempts if (e := self._account(a, report)) is not None]
        if entries and self.a.config.audit_deliveries:
            self.a.audit.append_many(entries)
        self.a.outbox.record_many(attempts)

    def _account(self, attempt: Attempt, report: DispatchReport) -> dict[str, Any] | None:
        """Count and log one outcome; the audit entry of a finished batch."""
        claimed = attempt.claimed
        label = (
            f"batch {claimed.id} to {claimed.destination} "
            f"({claimed.n_items} events, attempt {claimed.attempt})"
        )
        if attempt.outcome == "retry":
            report.retries += 1
            log.warning(
                "%s: %s; retry in %.1f s",
                label,
                attempt.error,
                (attempt.next_attempt_at or time.time()) - time.time(),
            )
            return None
        if attempt.outcome == "delivered":
            report.delivered += claimed.n_items
            report.batches += 1
            log.info("%s: delivered (HTTP %s)", label, attempt.status)
        else:
            report.dead += claimed.n_items
            log.error("%s: dead letter: %s", label, attempt.error)
        return {
            "actor": ACTOR,
            "action": "deliver" if attempt.outcome == "delivered" else "dead_letter",
            "n_customers": claimed.n_items,
            "query": f"{', '.join(claimed.sources)} -> {claimed.destination}",
            "extra": {
                "batch": claimed.id,
                "idempotency_key": claimed.key,
                "attempts": claimed.attempt,
                "status": attempt.status,
                "error": attempt.error,
                "customer_id_hashes": self.a.outbox.customer_hashes(claimed.id),
            },
        }

    def _due_now(self) -> bool:
        names = [n for n, d in self.destinations().items() if isinstance(d, WebhookDestination)]
        due = self.a.outbox.next_due(names)
        return due is not None and due <= time.time()

    def _sleep_s(self, rate_wait: float | None) -> float:
        poll = self.a.config.poll_interval_s
        names = [n for n, d in self.destinations().items() if isinstance(d, WebhookDestination)]
        due = self.a.outbox.next_due(names)
        sleep = poll if due is None else max(0.0, min(poll, due - time.time()))
        if rate_wait is not None:
            sleep = min(sleep, max(rate_wait, 0.001))
        return sleep

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        *,
        stop: threading.Event | None = None,
        max_seconds: float | None = None,
        until: str = "forever",
        lock_wait_s: float = 0.0,
        on_turn: Callable[[DispatchReport], None] | None = None,
    ) -> DispatchReport:
        """Run the loop while holding the dispatcher lock.

        Args:
            stop: Set it to stop (in-flight attempts finish and are recorded first).
            max_seconds: Upper bound on the run (None: none).
            until: ``forever``, ``idle`` (nothing due now) or ``drained`` (nothing open).
            lock_wait_s: How long to wait for another dispatcher's lock.
            on_turn: Called after every turn with the report so far (progress).

        Raises:
            DispatcherBusy: Another dispatcher holds the lock.
        """
        if until not in UNTIL:
            raise ValueError(f"Expected until in {UNTIL}. Got {until!r}.")
        stop = stop or threading.Event()
        report = DispatchReport()
        started = time.monotonic()
        with self.locked(wait_s=lock_wait_s):
            report.recovered = self.a.outbox.recover()
            pool = ThreadPoolExecutor(self.a.config.max_in_flight, thread_name_prefix="deliver")
            try:
                report.stopped = self._loop(
                    pool, stop, started, max_seconds, until, report, on_turn
                )
                if self._inflight:
                    wait(list(self._inflight))
                self._harvest()
                self._flush(report, force=True)
            finally:
                pool.shutdown(wait=True)
                for _, sender in self._senders.values():
                    sender.close()
                self._senders.clear()
        report.seconds = time.monotonic() - started
        return report

    def _loop(
        self,
        pool: ThreadPoolExecutor,
        stop: threading.Event,
        started: float,
        max_seconds: float | None,
        until: str,
        report: DispatchReport,
        on_turn: Callable[[DispatchReport], None] | None,
    ) -> str:
        while True:
            if stop.is_set():
                return "stopped"
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                return "time"
            self._turn(report)
            rate_wait = self._launch(pool)
            if on_turn is not None:
                on_turn(report)
            if not self._inflight:
                self._flush(report, force=True)
                if until == "idle" and not self._due_now() and rate_wait is None:
                    return "idle"
                if until == "drained" and self.a.outbox.open_count() == 0:
                    return "drained"
                sleep = self._sleep_s(rate_wait)
            else:
                sleep = self.a.config.poll_interval_s
                if self._finished:
                    sleep = min(sleep, max(0.0, self._flush_at - time.monotonic()))
                if rate_wait is not None:
                    sleep = min(sleep, max(rate_wait, 0.001))
            if max_seconds is not None:
                sleep = min(sleep, max(0.0, max_seconds - (time.monotonic() - started)))
            if self._inflight:
                wait(list(self._inflight), timeout=sleep, return_when=FIRST_COMPLETED)
                self._harvest()
                self._flush(report)
            elif sleep > 0:
                stop.wait(sleep)

    def _turn(self, report: DispatchReport) -> None:
        """Ingest and sync when the tag store changed (or a sync's interval passed)."""
        changed = self._store_changed()
        now = time.time()
        if not changed and now < self._next_sync_check:
            return
        try:
            if changed:
                report.add_ingest(self.ingest())
            report.syncs.extend(r for r in self.sync() if r.kind != "skipped")
        except TagsError as exc:
            # The store is busy (a tagging run) or mid-restore: try again next turn.
            log.warning("transitions not read this turn: %s", exc)
            self._store_mark = None
        self._next_sync_check = now + 60.0
