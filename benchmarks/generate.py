"""Benchmark of the synthetic data generator: 1M customers over two years.

Each run happens in a fresh child process, so the peak resident memory reported is the
generator's own (``ru_maxrss`` of that child), not this script's. A reference run at a
tenth of the size shows how time and memory scale.

Usage::

    python benchmarks/generate.py [--customers 1000000] [--reference 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue as queue_module
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, Python puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

BUDGET_SECONDS = 120.0
BUDGET_GIB = 8.0


def _run(n_customers: int, seed: int, queue: Any) -> None:
    import resource

    from synthetic import generate

    began = time.perf_counter()
    cpu_began = time.process_time()
    data = generate(n_customers, start="2023-01-01", end="2024-12-31", seed=seed)
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    # Linux reports ru_maxrss in KiB.
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    counts = data.events["event_type"].value_counts().to_dict()
    queue.put(
        {
            "customers": n_customers,
            "seconds": elapsed,
            "cpu_seconds": cpu,
            "events": len(data.events),
            "peak_gib": peak_gib,
            "by_type": {str(k): int(v) for k, v in counts.items()},
        }
    )


def measure(n_customers: int, seed: int) -> dict[str, Any]:
    """Generate in a fresh (spawned) process and return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_run, args=(n_customers, seed, queue))
    child.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not child.is_alive():
                raise SystemExit(f"generator child exited with code {child.exitcode}") from None
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(
        f"python {platform.python_version()} on {platform.machine()} ({os.cpu_count()} CPUs, "
        f"load {load:.1f}), 2023-01-01 .. 2024-12-31, seed {args.seed}"
    )
    ref = measure(args.reference, args.seed)
    big = measure(args.customers, args.seed)
    for r in (ref, big):
        print(
            f"{r['customers']:>10,} customers: {r['seconds']:6.1f} s wall ({r['cpu_seconds']:.1f} s"
            f" CPU), {r['events']:>11,} events, {r['events'] / r['seconds']:>10,.0f} events/s,"
            f" peak RSS {r['peak_gib']:.2f} GiB"
        )
    print("events by type:", json.dumps(big["by_type"]))
    size = big["customers"] / ref["customers"]
    print(
        f"scaling x{size:g} customers: time x{big['seconds'] / ref['seconds']:.1f}, "
        f"events x{big['events'] / ref['events']:.1f}, "
        f"peak memory x{big['peak_gib'] / ref['peak_gib']:.1f}"
    )
    ok = big["seconds"] <= BUDGET_SECONDS and big["peak_gib"] <= BUDGET_GIB
    print(
        f"budget ({BUDGET_SECONDS:.0f} s, {BUDGET_GIB:.0f} GiB): {'met' if ok else 'MISSED'}"
        f" ({big['seconds'] / BUDGET_SECONDS:.0%} of time, {big['peak_gib'] / BUDGET_GIB:.0%}"
        " of memory)"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
