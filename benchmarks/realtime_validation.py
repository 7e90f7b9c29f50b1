"""CPU of validating queued ``POST /events`` batches together (``streaming.checking``).

A backlog of HTTP requests reaches the tagger as a group of small batches validated in
one micro-batch; a NATS micro-batch is one batch of the same events. This times
``LiveTagger``'s validation step (nothing stored) of ``k`` batches of ``m`` events for
random customers of a big project, against one batch of ``k * m``, so the cost of
queued requests over one big batch shows.

Every event gets its own time (as the HTTP benchmark's clients send them): two events
of one customer at the same instant in two batches are exact-duplicate candidates that
validation must judge in order.

Usage::

    cp -a /tmp/p1m /tmp/copy   # a benchmarks/big_project.py project (read, not written)
    PYTHONPATH=. python benchmarks/realtime_validation.py --root /tmp/copy --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SHAPES = [(1, 2000), (20, 100), (50, 100), (1, 5000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from benchmarks.big_project import ensure_project
    from streaming.pipeline import Request
    from tagsmith.live import live_tagger

    project = ensure_project(args.root, args.customers)
    tagger, _ = live_tagger(project)
    tagger.warm()
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    rng = np.random.default_rng(3)

    def group(k: int, m: int, tag: str) -> list[Any]:
        return [
            Request(
                [
                    {
                        "event_id": f"rv{time.time_ns():x}-{tag}-{i}-{j}",
                        "customer_id": str(c),
                        "occurred_at": pd.Timestamp.now(tz="UTC").isoformat(),
                        "event_type": "browse",
                    }
                    for j, c in enumerate(rng.choice(ids, size=m))
                ],
                "POST /events (bench)",
            )
            for i in range(k)
        ]

    cpu: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for k, m in SHAPES:
            requests = group(k, m, f"{rep}")
            c0 = time.process_time()
            checked = tagger._check(requests, pd.Timestamp.now(tz="UTC"))
            cpu.setdefault(f"{k}x{m}", []).append(time.process_time() - c0)
            assert len(checked) == k, f"expected {k} batches validated, got {len(checked)}"
    print(
        json.dumps(
            {
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "cpu_ms_median": {s: round(1000 * float(np.median(v)), 1) for s, v in cpu.items()},
                "cpu_ms_min": {s: round(1000 * min(v), 1) for s, v in cpu.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
