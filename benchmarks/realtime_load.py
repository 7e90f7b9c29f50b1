"""Load parts of ``benchmarks/realtime.py``: the HTTP path and the NATS path.

Every loop here is bounded in count and in time, so a run on a loaded machine ends (with
what it measured and what it could not finish said in the report) instead of waiting for
a tag change or a backlog forever.

Offered-rate steps are open loop: events are due at fixed times whatever the service
does, and an event's latency runs from when it was due, so a service that falls behind
shows it in the latency (no coordinated omission). The knee is the first offered rate
whose p99 passes 1 s, or whose events were not all done (refused with 429, or not
tagged by the step's deadline).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

P99_TARGET_S = 1.0
PROBE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 20.0
# Event ids of this run: a run on a project an earlier run wrote to must not send ids
# stored already (they would be duplicates, accepted 0).
RUN = f"{time.time_ns():x}"


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (NaN when empty)."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def ms(seconds: float) -> float | None:
    """Seconds as rounded milliseconds (None for NaN: JSON has no NaN)."""
    return None if seconds != seconds else round(1000 * seconds, 1)


def purchase(cid: str, event_id: str) -> dict[str, Any]:
    """A purchase of ``cid`` a second ago."""
    return {
        "event_id": event_id,
        "customer_id": cid,
        "occurred_at": (pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=1)).isoformat(),
        "event_type": "purchase",
        "amount": 42.0,
    }


def browse(cid: str, event_id: str) -> dict[str, Any]:
    """A browse event of ``cid`` now."""
    return {
        "event_id": event_id,
        "customer_id": cid,
        "occurred_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "event_type": "browse",
    }


def warmed_tagger(root: Path) -> tuple[Any, np.ndarray]:
    """The live tagger of the project at ``root``, warmed, and the project's customer ids."""
    from tagsmith.live import live_tagger
    from tagsmith.project import Project

    project = Project.load(root)
    tagger, _ = live_tagger(project)
    tagger.warm()
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    return tagger, ids


def logins(rng: np.random.Generator, ids: np.ndarray, batch: int, prefix: str) -> list[Any]:
    """``batch`` new login events now, of customers drawn from ``ids``; ids start ``prefix``."""
    now = pd.Timestamp.now(tz="UTC").isoformat()
    return [
        {
            "event_id": f"{prefix}-{time.time_ns()}-{j}",
            "customer_id": str(c),
            "occurred_at": now,
            "event_type": "login",
        }
        for j, c in enumerate(rng.choice(ids, size=batch))
    ]


def stage(runtime: Any, caller: Any, cid: str) -> str | None:
    """The customer's ``lifecycle_stage`` as ``/tags`` answers it."""
    answer = runtime.tags(caller, [cid])
    for t in answer["results"][0].get("tags") or []:
        if t["tag_id"] == "lifecycle_stage":
            return str(t["value"])
    return None


def _wait_changed(runtime: Any, reader: Any, cid: str, before: str | None, t: float) -> bool:
    while time.perf_counter() - t < PROBE_TIMEOUT_S:
        if stage(runtime, reader, cid) != before:
            return True
        time.sleep(0.002)
    return False


def _probe_summary(lat: list[float], missed: int) -> dict[str, Any]:
    return {
        "probes": len(lat) + missed,
        "not_visible_within_s": {str(PROBE_TIMEOUT_S): missed},
        "p50_ms": ms(pct(lat, 50)),
        "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(max(lat)) if lat else None,
        "each_ms": [ms(x) for x in lat],  # in order: a slow first one is a catch-up
    }


def http_probes(runtime: Any, customers: list[str]) -> dict[str, Any]:
    """One purchase per lapsed customer through ``POST /events``; time until ``/tags``
    shows another lifecycle stage (at most :data:`PROBE_TIMEOUT_S` each)."""
    from serving.access import Caller

    ingest, reader = Caller("bench", "ingest"), Caller("bench", "executive")
    lat: list[float] = []
    missed = 0
    for i, cid in enumerate(customers):
        before = stage(runtime, reader, cid)
        t = time.perf_counter()
        runtime.ingest_events(ingest, [purchase(cid, f"h{time.time_ns()}-{i}")])
        if _wait_changed(runtime, reader, cid, before, t):
            lat.append(time.perf_counter() - t)
        else:
            missed += 1
    return _probe_summary(lat, missed)


def _step_verdict(step: dict[str, Any]) -> bool:
    """True when the step passes: p99 within target and every event done (none refused,
    none left untagged at the drain deadline). A service falling behind fails by its p99
    (latencies run from when events were due); the achieved rate, which also counts the
    last events' latency, is reported beside it."""
    p99 = step.get("p99_ms")
    return (
        p99 is not None
        and p99 <= 1000 * P99_TARGET_S
        and not step.get("not_done")
        and not step.get("refused")
    )


def knee(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest offered rate that passed and the first that did not."""
    passed = [s["offered_per_s"] for s in steps if s["passed"]]
    failed = [s["offered_per_s"] for s in steps if not s["passed"]]
    return {
        "highest_passing_per_s": max(passed) if passed else None,
        "first_failing_per_s": failed[0] if failed else None,
    }


def _http_step(
    runtime: Any, ids: np.ndarray, rng: np.random.Generator, rate: int, size: int, seconds: float
) -> dict[str, Any]:
    """One offered rate through ``POST /events``: requests of ``size`` events due every
    ``size / rate`` seconds, sent by up to 48 client threads."""
    from serving.access import Caller
    from serving.errors import TooManyRequests

    ingest = Caller("bench", "ingest")
    n_requests = max(1, int(rate * seconds / size))
    lat: list[float] = []
    counts = {"accepted": 0, "refused": 0}
    lock = threading.Lock()

    def post(k: int, due: float, chosen: np.ndarray) -> None:
        records = [browse(str(c), f"{RUN}-r{rate}-{k}-{j}") for j, c in enumerate(chosen)]
        try:
            answer = runtime.ingest_events(ingest, records)
        except TooManyRequests:
            with lock:
                counts["refused"] += len(records)
            return
        done = time.perf_counter()
        with lock:
            counts["accepted"] += int(answer["accepted"])
            lat.extend([done - due] * len(records))

    start = time.perf_counter() + 0.05
    cpu0 = time.process_time()
    with ThreadPoolExecutor(max_workers=48) as pool:
        futures = []
        for k in range(n_requests):
            due = start + k * size / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, k, due, rng.choice(ids, size=size)))
        drain_until = time.perf_counter() + DRAIN_TIMEOUT_S
        for f in futures:
            f.result(timeout=max(0.001, drain_until - time.perf_counter()))
    elapsed = time.perf_counter() - start
    step = {
        "offered_per_s": rate,
        "events_per_request": size,
        "requests": n_requests,
        "achieved_per_s": round(counts["accepted"] / elapsed, 1),
        "p50_ms": ms(pct(lat, 50)),
        "p99_ms": ms(pct(lat, 99)),
        "refused": counts["refused"],
        "not_done": n_requests * size - len(lat) - counts["refused"],
        "cpu_s_per_s": round((time.process_time() - cpu0) / elapsed, 2),
    }
    step["passed"] = _step_verdict(step)
    return step


def http_rates(
    runtime: Any,
    ids: np.ndarray,
    rates: list[int],
    *,
    per_request: int,
    seconds: float,
    deadline: float,
    step: Callable[..., dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Offer each rate through ``POST /events`` for ``seconds`` (requests of at most
    ``per_request`` events, a twentieth of a second's worth at low rates); stop after
    the first failing rate or at ``deadline`` (``time.perf_counter``). ``step(runtime,
    ids, rng, rate, size, seconds)`` runs one rate (this process's runtime by default;
    ``realtime_server.server_step`` for a real server)."""
    step = step or _http_step
    rng = np.random.default_rng(7)
    steps: list[dict[str, Any]] = []
    for rate in rates:
        if time.perf_counter() + seconds + DRAIN_TIMEOUT_S > deadline:
            steps.append({"offered_per_s": rate, "skipped": "time budget", "passed": False})
            break
        size = max(1, min(per_request, rate // 20 or 1))
        steps.append(step(runtime, ids, rng, rate, size, seconds))
        if not steps[-1]["passed"]:
            break
    return steps


def http_closed_loop(
    runtime: Any, ids: np.ndarray, clients: int, batch: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads posting ``batch`` new events each, back to back, for
    ``seconds`` (each finishes its request in flight): the most the HTTP path takes."""
    from serving.access import Caller
    from serving.errors import TooManyRequests

    ingest = Caller("bench", "ingest")
    lat: list[float] = []
    counts = [0] * clients
    refused = [0] * clients
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        i = 0
        while time.perf_counter() < stop_at:
            records = [
                browse(str(c), f"{RUN}-c{clients}-{k}-{i}-{j}")
                for j, c in enumerate(rng.choice(ids, size=batch))
            ]
            t = time.perf_counter()
            try:
                answer = runtime.ingest_events(ingest, records)
            except TooManyRequests as exc:
                refused[k] += 1
                time.sleep(min(exc.retry_after_s, 1.0))
                continue
            lat.append(time.perf_counter() - t)
            counts[k] += int(answer["accepted"])
            i += 1

    start = time.perf_counter()
    cpu0 = time.process_time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "batch": batch,
        "events": sum(counts),
        "events_per_s": round(sum(counts) / elapsed, 1),
        "request_p50_ms": ms(pct(lat, 50)),
        "request_p99_ms": ms(pct(lat, 99)),
        "refused_requests": sum(refused),
        "cpu_s_per_s": round((time.process_time() - cpu0) / elapsed, 2),
    }


# -- NATS ------------------------------------------------------------------------------


def nats_server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A nats-server with JetStream on 127.0.0.1, a free port, ``store`` as its folder."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    binary = Path(sys.executable).parent / "nats-server"
    proc = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"nats://127.0.0.1:{port}"


def _nats_probes(loop: Any, js: Any, runtime: Any, probes: list[str]) -> dict[str, Any]:
    """Publish one purchase per probe; time until the runtime's ``/tags`` shows it."""
    from serving.access import Caller

    reader = Caller("bench", "executive")
    lat: list[float] = []
    missed = 0
    for i, cid in enumerate(probes):
        before = stage(runtime, reader, cid)
        t = time.perf_counter()
        body = json.dumps(purchase(cid, f"n{time.time_ns()}-{i}")).encode()
        loop.run_until_complete(js.publish("events.shop", body))
        if _wait_changed(runtime, reader, cid, before, t):
            lat.append(time.perf_counter() - t)
        else:
            missed += 1
    return {**_probe_summary(lat, missed), "live_poll_s": runtime.live_poll_s}


def message_due_times(n: int, rate: float, per_message: int, start: float) -> np.ndarray:
    """When each of ``n`` events offered at ``rate`` is due, sent ``per_message`` a message.

    A message is sent when its first event is due (``start + k / rate`` for the message
    starting at event ``k``), so every event of it is due then: an event's latency counts
    from the moment its message was sent. Dating each event by its own ``start + k /
    rate`` instead made events late in a message look up to ``(per_message - 1) / rate``
    faster than they were (a negative p50 at 50 events/s in 100-event messages), as the
    HTTP steps date every event of a request by the request's due time.
    """
    first = (np.arange(n, dtype=np.int64) // per_message) * per_message
    return start + first / float(rate)


async def _publish(spec: dict[str, Any]) -> None:
    """Publish a browse event per customer of ``spec["customers"]``, ``per_message``
    events a message, each message at its due time (:func:`message_due_times`, wall
    clock)."""
    import nats

    nc = await nats.connect(spec["url"])
    js = nc.jetstream()
    chosen, rate, per_message = spec["customers"], spec["rate"], spec["per_message"]
    pending = []
    sends = message_due_times(len(chosen), rate, per_message, spec["start"])
    for k in range(0, len(chosen), per_message):
        delay = float(sends[k]) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = datetime.now(UTC).isoformat()
        body = [
            {
                "event_id": f"{spec['run']}-n{rate}-{k + j}",
                "customer_id": c,
                "occurred_at": now,
                "event_type": "browse",
            }
            for j, c in enumerate(chosen[k : k + per_message])
        ]
        payload = body[0] if per_message == 1 else body
        # A task, not a bare coroutine: it is sent now (at the next await), not when the
        # pending ones are gathered. Gathering bare coroutines every 64 messages held each
        # message back until 63 more were due (1.3 s at 50 messages/s).
        pending.append(
            asyncio.ensure_future(js.publish("events.shop", json.dumps(payload).encode()))
        )
        if len(pending) >= 64:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()


def publish_main() -> None:
    """The publisher process: ``sys.argv[1]`` is the JSON spec of :func:`_publish`."""
    asyncio.run(_publish(json.loads(Path(sys.argv[1]).read_text())))


def _publisher(url: str, chosen: list[str], rate: int, per_message: int, start: float) -> Any:
    """Start the publisher in its own process: the load generator's CPU and GIL are not
    the consumer's (on this machine they still share the two cores)."""
    spec = {
        "run": RUN,
        "url": url,
        "customers": chosen,
        "rate": rate,
        "per_message": per_message,
        "start": start,
    }
    path = Path(tempfile.mkstemp(prefix="h15-rt-pub-", suffix=".json")[1])
    path.write_text(json.dumps(spec))
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
        "from benchmarks.realtime_load import publish_main; publish_main()"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(path)], start_new_session=True), path


def _nats_rates(
    url: str,
    ids: np.ndarray,
    rates: list[int],
    done_at: dict[str, float],
    report: Any,
    *,
    per_message: int,
    seconds: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """Offer each rate for ``seconds``; stop after the first failing one or at ``deadline``.

    A separate process publishes (:func:`publish_main`). ``done_at`` is filled by the
    consumer's batch callback (customer -> wall time its first micro-batch was stored
    and tagged). Customers are drawn at random from the whole population, so a step
    rarely names one twice; an event's latency runs from when the message carrying the
    first event of its customer was due (:func:`message_due_times`) to that time
    (``/tags`` then shows it at the service's next live poll).
    """
    rng = np.random.default_rng(5)
    steps: list[dict[str, Any]] = []
    for rate in rates:
        if time.perf_counter() + seconds + DRAIN_TIMEOUT_S + 5 > deadline:
            steps.append({"offered_per_s": rate, "skipped": "time budget", "passed": False})
            break
        n = int(rate * seconds)
        done_at.clear()
        chosen = [str(c) for c in rng.choice(ids, size=n)]
        start = time.time() + 2.0  # the publisher process starts meanwhile
        due_at: dict[str, float] = {}
        for c, due in zip(chosen, message_due_times(n, rate, per_message, start), strict=True):
            due_at.setdefault(c, float(due))
        accepted0 = report.accepted
        proc, spec_path = _publisher(url, chosen, rate, per_message, start)
        cpu0 = time.process_time()
        try:
            proc.wait(timeout=seconds + DRAIN_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            spec_path.unlink(missing_ok=True)
        drain_until = time.time() + DRAIN_TIMEOUT_S
        while len(done_at) < len(due_at) and time.time() < drain_until:
            time.sleep(0.05)
        lat = [done_at[c] - due_at[c] for c in due_at if c in done_at]
        elapsed = max(done_at.values(), default=start) - start
        step = {
            "offered_per_s": rate,
            "events_per_message": per_message,
            "achieved_per_s": (
                round((report.accepted - accepted0) / elapsed, 1) if elapsed > 0 else None
            ),
            "p50_ms": ms(pct(lat, 50)),
            "p99_ms": ms(pct(lat, 99)),
            "not_done": len(due_at) - len(lat),
            "publisher_exit": proc.returncode,
            "consumer_cpu_s_per_s": round(
                (time.process_time() - cpu0) / max(time.time() - start, 1e-9), 2
            ),
        }
        step["passed"] = _step_verdict(step) and proc.returncode == 0
        steps.append(step)
        if not step["passed"]:
            break
    return steps


def nats_part(
    project: Any,
    runtime: Any,
    tagger: Any,
    ids: np.ndarray,
    probes: list[str],
    rates: list[int],
    *,
    per_message: int,
    seconds: float,
    deadline: float,
) -> dict[str, Any]:
    """A real nats-server and the real consumer in a thread, feeding ``tagger``."""
    import nats

    from streaming.consumer import ConsumerReport, consume, ensure_stream

    cfg = project.config.streaming.model_copy(update={"batch_size": 500, "batch_wait_s": 0.2})
    tmp = Path(tempfile.mkdtemp(prefix="h15-rt-nats-"))
    proc, url = nats_server(tmp / "js")
    stop_flag = threading.Event()
    done_at: dict[str, float] = {}
    report = ConsumerReport()
    # Events of each micro-batch, by its write's seq: the consumer's queued batches of
    # messages that the tagger applied together share one.
    micro: dict[int, int] = {}

    def on_batch(result: Any, _total: Any) -> None:
        now = time.time()  # wall clock: the publisher process dates events by it
        micro[result.seq] = micro.get(result.seq, 0) + result.received
        # The customers, not the rows: the runtime's subscription takes the rows.
        for cid in result.customer_ids:
            done_at.setdefault(str(cid), now)

    def run_consumer() -> None:
        async def main() -> None:
            stop = asyncio.Event()

            async def watch() -> None:
                while not stop_flag.is_set():
                    await asyncio.sleep(0.05)
                stop.set()

            watcher = asyncio.ensure_future(watch())
            await consume(
                tagger,
                cfg,
                url=url,
                subject=cfg.subject,
                stop=stop,
                report=report,
                on_batch=on_batch,
            )
            await watcher

        asyncio.run(main())

    out: dict[str, Any] = {}
    thread = threading.Thread(target=run_consumer, daemon=True)
    loop = asyncio.new_event_loop()
    try:

        async def setup() -> Any:
            nc = await nats.connect(url)
            await ensure_stream(nc.jetstream(), cfg, cfg.subject)
            return nc

        nc = loop.run_until_complete(setup())
        js = nc.jetstream()
        started = time.perf_counter()
        thread.start()
        while not report.started and time.perf_counter() - started < 60:  # not a probe's
            time.sleep(0.05)
        out["consumer_start_s"] = round(time.perf_counter() - started, 2)
        out["visible_in_tags"] = _nats_probes(loop, js, runtime, probes)
        steps = _nats_rates(
            url,
            ids,
            rates,
            done_at,
            report,
            per_message=per_message,
            seconds=seconds,
            deadline=deadline,
        )
        out["sustained"] = steps
        out["knee"] = knee(steps)
        sizes = list(micro.values())
        out["consumer"] = {
            **report.to_json(),
            "micro_batches": len(sizes),
            "batch_events_p50": pct(sizes, 50) if sizes else None,
            "batch_events_max": max(sizes) if sizes else None,
        }
        loop.run_until_complete(nc.close())
    finally:
        stop_flag.set()
        thread.join(timeout=30)
        proc.terminate()
        proc.wait(timeout=10)
        loop.close()
    return out
