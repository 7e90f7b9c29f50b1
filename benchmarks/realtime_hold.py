"""A/B of real-time tagging's live write: the tag store held open across micro-batches
(``TagStore.held_writer``, the product path) against a connection opened and closed
(checkpointed) per write (``TagStore.writer``, the path before), in one process,
alternating batch by batch, CPU time.

Each round applies one micro-batch of ``--batch`` new events (``LiveTagger.apply``:
validation, durable segment, re-tag, live write) in each mode, in alternating order;
before a "held" batch one untimed write makes sure the connection is open (it would be
under a steady stream). Also timed per round: validation alone (``_check``) and the
re-tag's compute alone (``_evaluate``), to place the write's share.

Usage::

    cp -a /work/bench/p1m /tmp/p1m-copy   # the run adds live events
    PYTHONPATH=. /work/tools/big.sh python benchmarks/realtime_hold.py --root /tmp/p1m-copy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.realtime_load import logins, warmed_tagger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a copy of a tagged project")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1, help="events per micro-batch")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    load_start = os.getloadavg()

    from streaming.pipeline import Request
    from streaming.tagger import live_as_of

    tagger, ids = warmed_tagger(args.root)
    rng = np.random.default_rng(7)
    store = tagger.tag_store
    cpu: dict[str, list[float]] = {"held": [], "per_write": [], "check": [], "evaluate": []}
    for i in range(args.rounds):
        for mode in ("held", "per_write") if i % 2 else ("per_write", "held"):
            if mode == "per_write":
                store.release()
                # The path before: open, write, close (checkpoint) per micro-batch.
                store.__dict__["held_writer"] = store.writer
            else:
                store.__dict__.pop("held_writer", None)
                now = pd.Timestamp.now(tz="UTC")
                tagger.retag([str(ids[0])], as_of=live_as_of(now), at=now)
            records = logins(rng, ids, args.batch, f"hold-{mode}")
            c = time.process_time()
            tagger.apply(records, source="bench")
            cpu[mode].append(time.process_time() - c)
        records = logins(rng, ids, args.batch, "hold-parts")
        now = pd.Timestamp.now(tz="UTC")
        c = time.process_time()
        tagger._check([Request(records, "bench")], now)
        cpu["check"].append(time.process_time() - c)
        customers = tagger.index.known(str(r["customer_id"]) for r in records)
        c = time.process_time()
        tagger._evaluate(customers, live_as_of(now), at=now)
        cpu["evaluate"].append(time.process_time() - c)
    store.__dict__.pop("held_writer", None)
    tagger.close()
    p50 = {k: round(1000 * float(np.median(v)), 1) for k, v in cpu.items()}
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "batch": args.batch,
                "cpu_p50_ms": {
                    "apply_held": p50["held"],
                    "apply_per_write": p50["per_write"],
                    "check": p50["check"],
                    "evaluate": p50["evaluate"],
                },
                "held_vs_per_write": round(p50["held"] / p50["per_write"], 2),
                "load_average_start": [round(x, 2) for x in load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
