"""CPU per micro-batch of real-time tagging (``LiveTagger.apply``), optionally profiled.

Loads the project's tagger, warms it, applies three untimed batches, then ``--rounds``
micro-batches of ``--batch`` random customers' ``login`` events, and prints the CPU
p50 and minimum per batch. With ``--profile`` it also prints cProfile's cumulative list
of the timed calls (the profiler inflates Python-heavy code: use it to find where the
time goes, the plain run to compare code). For an A/B, run it alternately on copies
of two commits' code (``git archive``), each on a fresh copy of the project.

Usage::

    cp -a /tmp/p1m /tmp/p1m-copy   # the run adds live events
    PYTHONPATH=. /work/tools/big.sh .venv/bin/python benchmarks/realtime_batch_cost.py \\
        --root /tmp/p1m-copy --batch 1 --rounds 40
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

from benchmarks.realtime_load import logins, warmed_tagger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a copy of a tagged project")
    parser.add_argument("--batch", type=int, default=1, help="events per micro-batch")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 70")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    load_start = os.getloadavg()

    tagger, ids = warmed_tagger(args.root)
    rng = np.random.default_rng(time.time_ns() % 2**32)
    for i in range(3):  # untimed: the first batches pay one-off costs
        tagger.apply(logins(rng, ids, args.batch, f"cost-w{i}"), source="bench")
    profile = cProfile.Profile()
    cpu = []
    for i in range(args.rounds):
        records = logins(rng, ids, args.batch, f"cost-{i}")
        c = time.process_time()
        if args.profile:
            profile.enable()
        tagger.apply(records, source="bench")
        if args.profile:
            profile.disable()
        cpu.append(time.process_time() - c)
    tagger.close()
    print(
        json.dumps(
            {
                "batch": args.batch,
                "rounds": args.rounds,
                "cpu_p50_ms": round(1000 * float(np.median(cpu)), 1),
                "cpu_min_ms": round(1000 * min(cpu), 1),
                "profiled": args.profile,
                "load_average_start": [round(x, 2) for x in load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            indent=1,
        )
    )
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(70)
        print(out.getvalue())


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
