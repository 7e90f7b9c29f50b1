"""The NATS JetStream consumer of real-time tagging (``tagsmith stream run``).

A durable pull consumer on a file-backed stream: its position survives restarts of the
consumer and of the server. Messages are fetched in micro-batches whose size follows the
backlog (:class:`FetchSize`: up to :data:`~streaming.tagger.MAX_EVENTS_PER_BATCH` while
messages are waiting, the configured ``batch_size`` when the stream is quiet); each batch is applied
(:meth:`streaming.LiveTagger.apply`: validated, stored durably once per ``event_id``,
customers re-tagged, transitions recorded) and only then acknowledged, one ack per
message. A consumer killed at any point leaves its unacknowledged messages to be
redelivered after ``ack_wait_s``; the event ids make the redelivery a no-op for events
already stored, and re-tag their customers (finishing a batch whose tagging was cut off).
A consumer starts by finishing such batches itself (:meth:`~streaming.LiveTagger.recover`),
so the live values do not depend on the redelivery arriving.

A message body is one JSON event object, a JSON list of them, or NDJSON (one event
object per line): producers that batch their events (a real CDP does) pay the per-message
costs (publish, fetch, ack) once per batch. A body or line that is not JSON,
or events that break the contract, are quarantined like bad rows of a file import and
the message is acknowledged: a poison message never loops. A batch that fails for
another reason (the tag store busy for too long) is not acknowledged; it is asked to
be redelivered after a pause (``nak``), at most ``max_deliver`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from streaming.config import StreamingConfig
from streaming.pipeline import Request
from streaming.tagger import MAX_EVENTS_PER_BATCH, ApplyResult, LiveTagger

__all__ = ["ConsumerReport", "FetchSize", "consume", "ensure_stream", "publish_events"]

log = logging.getLogger(__name__)


@dataclass
class ConsumerReport:
    """What a consumer run did (also updated while it runs).

    Attributes:
        messages: Messages acknowledged.
        batches: Micro-batches applied.
        accepted: Events stored.
        duplicates: Events already stored (redeliveries, resends).
        quarantined: Events quarantined.
        failures: Batches left for redelivery after an error.
        last_error: The latest such error.
        started: Whether it has started (recovered, caught up, subscribed).
    """

    messages: int = 0
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failures: int = 0
    last_error: str | None = None
    started: bool = False
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, result: ApplyResult, n_messages: int) -> None:
        """Count one applied batch."""
        self.messages += n_messages
        self.batches += 1
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        for reason, n in result.quarantined.items():
            self.quarantined += n
            self.by_reason[reason] = self.by_reason.get(reason, 0) + n

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "messages": self.messages,
            "batches": self.batches,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantined_by_reason": dict(sorted(self.by_reason.items())),
            "failures": self.failures,
            "last_error": self.last_error,
        }


class FetchSize:
    """How many messages the next fetch asks for: adapts to the backlog.

    A micro-batch costs a fixed part (one durable segment, one tag-store transaction) plus
    a small part per event, so a backlog is worked off fastest in big batches, while a
    quiet stream is best served by small ones (a fetch returns whatever is there, up to
    the size asked). A fetch that came back full means messages are waiting: the next
    one asks for twice as many, up to :data:`MAX_EVENTS_PER_BATCH`; one that came back
    at most half full halves the size again, down to the configured ``batch_size``.

    Args:
        base: The configured ``batch_size`` (the smallest size asked for).
        ceiling: The largest size asked for.
    """

    def __init__(self, base: int, ceiling: int = MAX_EVENTS_PER_BATCH) -> None:
        self.base = max(1, base)
        self.ceiling = max(self.base, ceiling)
        self.current = self.base

    def observe(self, fetched: int) -> None:
        """Adapt to a fetch that returned ``fetched`` messages."""
        if fetched >= self.current:
            self.current = min(self.current * 2, self.ceiling)
        elif fetched <= self.current // 2:
            self.current = max(self.current // 2, self.base)


def _records(body: bytes) -> list[Any]:
    """The event records of one message: a JSON object, a JSON list of them, or NDJSON
    (one JSON value per line). A body (or an NDJSON line) that is not JSON is one bad
    record, quarantined with its text like a malformed file row; the others go on."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        lines = [line for line in body.split(b"\n") if line.strip()]
        if len(lines) < 2:
            return [_bad(body)]
        out: list[Any] = []
        for line in lines:
            try:
                item = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                out.append(_bad(line))
                continue
            out.extend(item if isinstance(item, list) else [item])
        return out
    return value if isinstance(value, list) else [value]


def _bad(text: bytes) -> str:
    # Kept as text: validation quarantines it as a malformed row with its content.
    return text.decode("utf-8", errors="replace")[:2000]


# Micro-batches a consumer has in the tagger at once: one being stored while the one
# before it is tagged (the tagger's two stages, streaming.pipeline).
IN_FLIGHT = 2


def _submit_all(
    tagger: LiveTagger, records: list[Any], source: str
) -> tuple[list[Request], Exception | None]:
    """Queue records in batches of at most :data:`MAX_EVENTS_PER_BATCH`, in order.

    Returns:
        The queued batches, and the error that stopped queueing the rest (None if none;
        those queued are applied all the same and must be waited for).
    """
    queued: list[Request] = []
    for i in range(0, max(len(records), 1), MAX_EVENTS_PER_BATCH):
        try:
            queued.append(tagger.submit(records[i : i + MAX_EVENTS_PER_BATCH], source=source))
        except Exception as exc:  # Busy: the service's own callers filled the queue
            return queued, exc
    return queued, None


def _wait_all(tagger: LiveTagger, queued: list[Request], failed: Exception | None) -> ApplyResult:
    """Wait for every queued batch; their summed result, or the first error."""
    results: list[ApplyResult] = []
    for request in queued:
        try:
            results.append(tagger.wait(request))
        except Exception as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
    if len(results) == 1:
        return results[0]
    total = results[-1]
    reasons: dict[str, int] = {}
    for r in results:
        for reason, n in r.quarantined.items():
            reasons[reason] = reasons.get(reason, 0) + n
    return ApplyResult(
        received=sum(r.received for r in results),
        accepted=sum(r.accepted for r in results),
        duplicates=sum(r.duplicates for r in results),
        quarantined=reasons,
        quarantine_file=total.quarantine_file,
        customers=sum(r.customers for r in results),
        changes=sum(r.changes for r in results),
        as_of=total.as_of,
        thresholds_from=total.thresholds_from,
        seq=total.seq,
        seconds=sum(r.seconds for r in results),
        customer_ids=list(dict.fromkeys(c for r in results for c in r.customer_ids)),
    )


async def ensure_stream(js: Any, cfg: StreamingConfig, subject: str) -> None:
    """Create the file-backed stream capturing ``subject`` unless it exists."""
    try:
        await js.stream_info(cfg.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(name=cfg.stream, subjects=[subject], storage=StorageType.FILE)
        )


@dataclass
class _Buffer:
    """Messages fetched ahead while a micro-batch is tagged: at most about one
    micro-batch of events waits here (memory stays bounded; the rest waits in the
    stream)."""

    items: deque[tuple[Any, list[Any]]] = field(default_factory=deque)
    events: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    taken: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, msgs: list[Any]) -> None:
        for msg in msgs:
            records = _records(msg.data)
            self.items.append((msg, records))
            self.events += len(records)
        self.arrived.set()

    def take(self, limit: int = MAX_EVENTS_PER_BATCH) -> tuple[list[Any], list[Any]]:
        """Whole messages, oldest first, up to ``limit`` events (at least one message)."""
        msgs: list[Any] = []
        records: list[Any] = []
        while self.items and (not msgs or len(records) + len(self.items[0][1]) <= limit):
            msg, mine = self.items.popleft()
            msgs.append(msg)
            records.extend(mine)
        self.events -= len(records)
        if not self.items:
            self.arrived.clear()
        self.taken.set()
        return msgs, records


async def _fetch_ahead(
    sub: Any, nc: Any, cfg: StreamingConfig, buffer: _Buffer, report: ConsumerReport
) -> None:
    """Fetch into ``buffer`` while there is room, also while a micro-batch is tagged (the
    next one then starts at once with everything that arrived meanwhile)."""
    size = FetchSize(cfg.batch_size)
    per_message = 1.0  # events per message seen so far: a fetch asks for room, not more
    while True:
        room = MAX_EVENTS_PER_BATCH - buffer.events
        if room <= 0:
            buffer.taken.clear()
            await buffer.taken.wait()
            continue
        ask = max(1, min(size.current, int(room / per_message)))
        try:
            # A long poll: it returns as soon as messages are there.
            msgs = await sub.fetch(ask, timeout=cfg.batch_wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except nats.errors.Error as exc:  # a transient server or connection hiccup
            if nc.is_closed:
                raise
            report.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("Fetching from %s failed (retrying): %s", cfg.stream, exc)
            await asyncio.sleep(0.2)
            continue
        if not msgs:
            continue
        size.observe(len(msgs) if len(msgs) < ask else size.current)
        before = buffer.events
        buffer.put(msgs)
        per_message = max(1.0, 0.5 * per_message + 0.5 * (buffer.events - before) / len(msgs))


async def consume(
    tagger: LiveTagger,
    cfg: StreamingConfig,
    *,
    url: str,
    subject: str,
    stop: asyncio.Event,
    report: ConsumerReport | None = None,
    on_batch: Callable[[ApplyResult, ConsumerReport], None] | None = None,
    max_messages: int | None = None,
) -> ConsumerReport:
    """Consume ``subject`` until ``stop`` is set (or ``max_messages`` were acknowledged).

    Messages are fetched ahead into a bounded buffer while a micro-batch is tagged; each
    micro-batch takes every buffered message (whole messages, up to
    :data:`MAX_EVENTS_PER_BATCH` events) and acknowledges them once it is applied. Up
    to :data:`IN_FLIGHT` micro-batches are in the tagger at once, queued in fetch order:
    the next is validated and stored while the one before is tagged.
    Messages fetched but not applied when the consumer stops are asked to be
    redelivered at once (``nak``).

    Raises:
        nats.errors.NoServersError: The server cannot be reached.
    """
    report = report or ConsumerReport()
    loop = asyncio.get_running_loop()
    # Batches a killed predecessor stored but never tagged: finished now, before new ones
    # (their messages may be redelivered too, or may not be: max_deliver, a resend).
    await loop.run_in_executor(None, tagger.recover)
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=-1, name="tagsmith")
    buffer = _Buffer()
    fetcher: asyncio.Task[None] | None = None
    in_flight: deque[asyncio.Future[None]] = deque()
    try:
        js = nc.jetstream()
        await ensure_stream(js, cfg, subject)
        sub = await js.pull_subscribe(
            subject,
            durable=cfg.durable,
            stream=cfg.stream,
            config=ConsumerConfig(
                durable_name=cfg.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=cfg.ack_wait_s,
                max_deliver=cfg.max_deliver,
                # Room for the largest adaptive fetch (below) while it is being tagged.
                max_ack_pending=max(cfg.batch_size, MAX_EVENTS_PER_BATCH) * 2,
            ),
        )
        fetcher = asyncio.ensure_future(_fetch_ahead(sub, nc, cfg, buffer, report))
        report.started = True
        while not stop.is_set():
            if max_messages is not None and report.messages >= max_messages:
                break
            while in_flight and in_flight[0].done():
                in_flight.popleft().result()
            if len(in_flight) >= IN_FLIGHT or not buffer.items:
                if fetcher.done():
                    fetcher.result()  # the connection closed: raise its error
                # Until a micro-batch in the tagger is done, or (room for one more)
                # messages arrive.
                waits: set[asyncio.Future[Any]] = set(in_flight)
                arrived = asyncio.ensure_future(buffer.arrived.wait())
                if len(in_flight) < IN_FLIGHT:
                    waits.add(arrived)
                await asyncio.wait(
                    waits, timeout=cfg.batch_wait_s, return_when=asyncio.FIRST_COMPLETED
                )
                arrived.cancel()
                continue
            msgs, records = buffer.take()
            # Queued here, in fetch order, while the micro-batch before is being tagged.
            queued, failed = _submit_all(tagger, records, f"nats:{msgs[0].subject}")
            in_flight.append(
                asyncio.ensure_future(
                    _finish_batch(loop, tagger, msgs, (queued, failed), report, on_batch)
                )
            )
    finally:
        # Micro-batches in the tagger are finished (acknowledged) before anything stops.
        await asyncio.gather(*in_flight, return_exceptions=True)
        if fetcher is not None:
            fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await fetcher
        await _give_back(buffer)
        try:
            await nc.drain()
        except (TimeoutError, nats.errors.Error):
            await nc.close()
    return report


async def _finish_batch(
    loop: asyncio.AbstractEventLoop,
    tagger: LiveTagger,
    msgs: list[Any],
    queued: tuple[list[Request], Exception | None],
    report: ConsumerReport,
    on_batch: Callable[[ApplyResult, ConsumerReport], None] | None,
) -> None:
    """Wait for one micro-batch of messages; acknowledge them only once it is durable."""
    try:
        result = await loop.run_in_executor(None, _wait_all, tagger, *queued)
    except Exception as exc:  # left for redelivery: the events are not lost
        report.failures += 1
        report.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("Batch of %d messages not applied (redelivered): %s", len(msgs), exc)
        for msg in msgs:
            await msg.nak(delay=1.0)
        return
    # Acks are fire-and-forget publishes: sent together, not one round of the loop each.
    await asyncio.gather(*(msg.ack() for msg in msgs))
    report.add(result, len(msgs))
    if on_batch is not None:
        on_batch(result, report)


async def _give_back(buffer: _Buffer) -> None:
    """Ask for messages fetched but never applied to be redelivered now (not after
    ``ack_wait``); a connection already gone redelivers them after it anyway."""
    while buffer.items:
        msg, _ = buffer.items.popleft()
        with contextlib.suppress(nats.errors.Error):
            await msg.nak()
    buffer.events = 0


async def publish_events(
    cfg: StreamingConfig, url: str, subject: str, bodies: list[bytes], *, window: int = 256
) -> int:
    """Publish message bodies to ``subject`` (the stream created when missing), awaiting
    the server's acks ``window`` at a time; returns the number published."""
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        await ensure_stream(js, cfg, cfg.subject)
        for start in range(0, len(bodies), window):
            chunk = bodies[start : start + window]
            await asyncio.gather(*(js.publish(subject, body) for body in chunk))
    finally:
        await nc.close()
    return len(bodies)
