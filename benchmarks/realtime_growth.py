"""Does a micro-batch cost more once many live events have accumulated?

In production live events accumulate all day, until the next batch run reconciles them;
a micro-batch's cost must not grow with them. This applies micro-batches of ``--batch``
new events (``LiveTagger.apply``, as the NATS consumer and ``POST /events`` do, with the
service runtime subscribed and polling as in ``benchmarks/realtime.py``'s NATS steps) at
each accumulated level of ``--levels`` live events (filled by untimed micro-batches of
``--fill-batch`` events in between), and times each step of every timed micro-batch:
wall and the calling thread's CPU, p50 and max per level, plus the held tag store's
closes (its checkpoint) and opens, the runtime's live poll, and compactions.

Usage::

    cp -a /tmp/p1m /tmp/p1m-copy   # the run adds live events
    PYTHONPATH=. /work/tools/big.sh python benchmarks/realtime_growth.py --root /tmp/p1m-copy
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

from benchmarks.realtime_load import logins  # noqa: E402

Timings = dict[str, list[tuple[float, float]]]


class Timer:
    """Wall and thread-CPU seconds of every call of the wrapped callables, by name."""

    def __init__(self) -> None:
        self.calls: Timings = defaultdict(list)
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = (time.perf_counter() - wall, time.thread_time() - cpu)
                with self._lock:
                    self.calls[name].append(spent)

        return timed

    def watch_gc(self) -> None:
        """Time every garbage collection (by generation) as ``gc.gen<n>``."""
        started: dict[str, float] = {}

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
                started["c"] = time.thread_time()
                return
            if "t" in started:
                spent = (time.perf_counter() - started["t"], time.thread_time() - started["c"])
                with self._lock:
                    self.calls[f"gc.gen{info['generation']}"].append(spent)

        gc.callbacks.append(callback)

    def take(self) -> Timings:
        """The calls so far (and start afresh)."""
        with self._lock:
            out, self.calls = self.calls, defaultdict(list)
        return out


def instrument(tagger: Any, runtime: Any, timer: Timer) -> None:
    """Wrap the steps of a micro-batch (instances and modules of this process only)."""
    import streaming.tagger as tagger_module
    import tags.store as store_module
    from tags.store_hold import HeldWriter

    for name in ("_store", "_tag", "_check", "compact"):
        setattr(tagger, name, timer.wrap(name, getattr(tagger, name)))
    tagger.index.refresh = timer.wrap("_store.refresh", tagger.index.refresh)
    tagger.index.add = timer.wrap("_store.index_add", tagger.index.add)
    tagger.index.event_tables = timer.wrap("_store.event_tables", tagger.index.event_tables)
    tagger.live.append = timer.wrap("_store.segment", tagger.live.append)
    tagger._retag.grid = timer.wrap("_tag.retag", tagger._retag.grid)
    tagger._live_state.sync = timer.wrap("_tag.state_sync", tagger._live_state.sync)
    tagger_module.write_live = timer.wrap("_tag.write_live", tagger_module.write_live)
    tagger_module.notify = timer.wrap("_tag.listeners", tagger_module.notify)
    store_module.open_store = timer.wrap("store.open", store_module.open_store)
    HeldWriter._close = timer.wrap("store.close", HeldWriter._close)  # type: ignore[method-assign]
    runtime.refresh_live = timer.wrap("runtime.poll", runtime.refresh_live)


def summary(calls: Timings) -> dict[str, dict[str, float]]:
    """Per step: calls, and p50 / max of wall and CPU in ms."""
    out = {}
    for name in sorted(calls):
        wall = np.array([w for w, _ in calls[name]]) * 1000
        cpu = np.array([c for _, c in calls[name]]) * 1000
        out[name] = {
            "n": len(wall),
            "wall_p50": round(float(np.median(wall)), 1),
            "wall_max": round(float(wall.max()), 1),
            "cpu_p50": round(float(np.median(cpu)), 1),
            "wall_sum": round(float(wall.sum()), 1),
        }
    return out


def _add_segments(tagger: Any, rng: np.random.Generator, ids: np.ndarray, n: int) -> None:
    """``n`` one-event segments stored as a stream of one-event micro-batches leaves them
    (stored directly: not tagged, as they would have been; the first micro-batch after
    reads them into the index)."""
    import pandas as pd

    from streaming.checking import check_batches
    from streaming.pipeline import Request

    now = pd.Timestamp.now(tz="UTC")
    checked = check_batches(
        [Request(logins(rng, ids, n, "seg"), "bench")],
        now=now,
        index=tagger.index,
        live=tagger.live,
        config=tagger.facts_config,
        on_error=lambda r, e: None,
    )
    for c in checked:
        for k in range(len(c.ids)):
            tagger.live.append(c.accepted.iloc[[k]].reset_index(drop=True), [c.ids[k]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a copy of a tagged project")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 50_000, 200_000])
    parser.add_argument("--batch", type=int, default=500, help="events per timed micro-batch")
    parser.add_argument("--rounds", type=int, default=30, help="timed micro-batches per level")
    parser.add_argument("--fill-batch", type=int, default=5_000)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between timed batches")
    parser.add_argument(
        "--segments",
        type=int,
        default=0,
        help="then one more level after this many one-event segments are added (each "
        "micro-batch stores one; small batches leave many)",
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    load_start = os.getloadavg()

    from serving.state import settle_heap
    from tagsmith.app import build_runtime
    from tagsmith.live import ServiceIngest, live_tagger
    from tagsmith.project import Project

    project = Project.load(args.root)
    tagger, _ = live_tagger(project)
    tagger.warm()
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    runtime = build_runtime(project)
    if not isinstance(runtime.event_ingest, ServiceIngest):
        sys.exit("the project's service has no event ingest (real-time tags are off)")
    runtime.event_ingest._tagger = tagger  # as benchmarks/realtime.py: one tagger
    runtime.start()
    settle_heap()
    timer = Timer()
    instrument(tagger, runtime, timer)
    timer.watch_gc()
    rng = np.random.default_rng(11)
    filled = 0
    levels = []
    plan = [(level, 0) for level in sorted(args.levels)]
    if args.segments:
        plan.append((plan[-1][0] if plan else 0, args.segments))
    for level, segments in plan:
        t = time.perf_counter()
        while filled < level:
            n = min(args.fill_batch, level - filled)
            tagger.apply(logins(rng, ids, n, f"fill-{filled}"), source="bench")
            filled += n
        if segments:
            _add_segments(tagger, rng, ids, segments)
            tagger.apply(logins(rng, ids, args.batch, "after-segments"), source="bench")
        fill_s = time.perf_counter() - t
        timer.take()
        t = time.perf_counter()
        for i in range(args.rounds):
            tagger.apply(logins(rng, ids, args.batch, f"l{level}-{i}"), source="bench")
            time.sleep(args.gap)
        span = time.perf_counter() - t
        levels.append(
            {
                "live_events_before": level,
                "segments": len(tagger.live.segment_names()),
                "fill_s": round(fill_s, 1),
                "timed_s": round(span, 2),
                "steps": summary(timer.take()),
            }
        )
        filled += args.rounds * args.batch
    runtime.stop()
    tagger.close()
    print(
        json.dumps(
            {
                "batch": args.batch,
                "rounds": args.rounds,
                "load_average_start": load_start,
                "load_average_end": os.getloadavg(),
                "levels": levels,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
