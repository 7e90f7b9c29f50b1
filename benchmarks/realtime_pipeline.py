"""A/B of real-time tagging's two stages (``streaming.pipeline``): the next micro-batch
validated and stored while this one is re-tagged and written (the product path) against
one micro-batch at a time (both stages under both locks: the path before), in one
process, alternating round by round.

Each round runs ``--clients`` threads that apply batches of ``--batch`` new events
back to back (``LiveTagger.apply``, the call behind ``POST /events``) for ``--seconds``;
reported per mode: events/s (wall), CPU-seconds per second of the process (how much of
the two cores it used), events per CPU-second, request latency p50/p99, and the ratios
of the two stages against one at a time.

Usage::

    cp -a /work/bench/p1m /tmp/p1m-copy   # the run adds live events
    PYTHONPATH=. /work/tools/big.sh python benchmarks/realtime_pipeline.py --root /tmp/p1m-copy
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.realtime_load import warmed_tagger  # noqa: E402


def _serial_drive(tagger: Any, request: Any) -> None:
    """The path before: one micro-batch through both stages at a time."""
    while not request.taken:
        with tagger.tag_store.keep_open(), tagger._lock, tagger._tag_lock:
            if request.taken:
                break
            staged = tagger._store(tagger._queue.take(10_000))
            if staged is not None:
                tagger._tag(staged)
    request.finished.wait()


def _round(tagger: Any, ids: np.ndarray, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """``args.clients`` threads applying ``args.batch``-event batches for ``args.seconds``."""
    latencies: list[float] = []
    events = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def client(k: int) -> None:
        rng = np.random.default_rng(abs(hash((tag, k))) % 2**32)
        n = 0
        while time.perf_counter() < stop_at:
            now = pd.Timestamp.now(tz="UTC").isoformat()
            records = [
                {
                    "event_id": f"pipe-{tag}-{k}-{n}-{j}-{time.time_ns()}",
                    "customer_id": str(c),
                    "occurred_at": now,
                    "event_type": "login",
                }
                for j, c in enumerate(rng.choice(ids, size=args.batch))
            ]
            n += 1
            t = time.perf_counter()
            result = tagger.apply(records, source="bench")
            with lock:
                latencies.append(time.perf_counter() - t)
                events[0] += result.accepted

    start, cpu0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"events": events[0], "wall": wall, "cpu": cpu, "latencies": latencies}


def _summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    events = sum(r["events"] for r in rounds)
    wall = sum(r["wall"] for r in rounds)
    cpu = sum(r["cpu"] for r in rounds)
    lat = [x for r in rounds for x in r["latencies"]]
    return {
        "events_per_s": round(events / wall, 1),
        "cpu_s_per_s": round(cpu / wall, 2),
        "events_per_cpu_s": round(events / cpu, 1),
        "request_p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
        "request_p99_ms": round(1000 * float(np.percentile(lat, 99)), 1),
        "requests": len(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a copy of a tagged project")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--seconds", type=float, default=8.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    load_start = os.getloadavg()

    tagger, ids = warmed_tagger(args.root)
    two_stages = tagger._drive
    runs: dict[str, list[dict[str, Any]]] = {"two_stages": [], "one_at_a_time": []}
    _round(tagger, ids, argparse.Namespace(**{**vars(args), "seconds": 2.0}), "warm")
    for i in range(args.rounds):
        for mode in ("two_stages", "one_at_a_time") if i % 2 else ("one_at_a_time", "two_stages"):
            tagger.__dict__["_drive"] = (
                two_stages if mode == "two_stages" else (lambda r: _serial_drive(tagger, r))
            )
            runs[mode].append(_round(tagger, ids, args, f"{mode}-{i}"))
    tagger.__dict__.pop("_drive", None)
    tagger.close()
    out = {mode: _summary(r) for mode, r in runs.items()}
    two, one = out["two_stages"], out["one_at_a_time"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        json.dumps(
            {
                "commit": commit,
                "clients": args.clients,
                "batch": args.batch,
                "seconds_per_round": args.seconds,
                "rounds_per_mode": args.rounds,
                **out,
                "two_stages_vs_one_at_a_time": {
                    "events_per_s": round(two["events_per_s"] / one["events_per_s"], 2),
                    "cpu_s_per_s": round(two["cpu_s_per_s"] / one["cpu_s_per_s"], 2),
                    "events_per_cpu_s": round(two["events_per_cpu_s"] / one["events_per_cpu_s"], 2),
                    "request_p99": round(two["request_p99_ms"] / one["request_p99_ms"], 2),
                },
                "load_average_start": [round(x, 2) for x in load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
