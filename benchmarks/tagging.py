"""Benchmark of a full tagging run: features -> rule tags -> tag store, then one audience.

The synthetic facts are generated and written to a fact store first (not timed as part
of the run); the run then happens in a fresh child process that reads the fact store as
``tagsmith tags run`` does, so the peak resident memory reported (``ru_maxrss`` of that
child) is the run's own. A reference
run at a tenth of the size shows how time and memory scale.

Usage::

    PYTHONPATH=. python benchmarks/tagging.py [--customers 1000000] [--reference 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package (here and in the spawned child): drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

AS_OF = "2025-01-01"
AUDIENCE = "rfm_segment = 'important_value' and lifecycle_stage in ('active', 'dormant')"
BUDGET_SECONDS = 180.0
BUDGET_GIB = 8.0


def _prepare(n_customers: int, seed: int, folder: Path) -> dict[str, Any]:
    import pandas as pd

    from synthetic import generate
    from tags.policy import write_default_policy
    from tagsmith.project import Project

    began = time.perf_counter()
    data = generate(n_customers, start="2023-01-01", end="2024-12-31", seed=seed)
    project = Project.init(folder)
    write_default_policy(project.policy_path)
    facts = project.fact_store()
    with facts.lock():
        facts.write(
            customers=data.customers,
            events=data.events,
            log_entries=[],
            now=pd.Timestamp("2025-01-01", tz="UTC"),
        )
    return {"events": len(data.events), "generate_s": time.perf_counter() - began}


def _run(folder: str, queue: Any) -> None:
    import resource

    from scoring.batch import run_tagging
    from tags.access import TagReader
    from tags.segments import select_audience
    from tagsmith.project import Project

    began = time.perf_counter()
    # The project the parent set up: facts, the standard library, the default policy.
    project = Project.load(Path(folder))
    catalogue = project.catalogue()
    store = project.tag_store()
    result = run_tagging(
        facts=project.fact_store(),
        catalogue=catalogue,
        store=store,
        as_of=AS_OF,
        spec=project.feature_spec(),
    )
    run_s = time.perf_counter() - began
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    reader = TagReader(
        store,
        catalogue,
        project.policy(),
        project.audit_log(),
        role="executive",
        actor="benchmark",
    )
    began = time.perf_counter()
    audience = select_audience(reader, AUDIENCE)
    audience_s = time.perf_counter() - began
    queue.put(
        {
            "customers": result.run.n_customers,
            "rows": result.run.n_rows,
            "tags": result.run.n_tags,
            "run_s": run_s,
            "steps": result.timings,
            "peak_gib": peak_gib,
            "audience_s": audience_s,
            "audience_size": audience.size,
            "store_mb": store.path.stat().st_size / 1e6,
        }
    )


def measure(n_customers: int, seed: int) -> dict[str, Any]:
    """Generate facts, then tag them in a fresh (spawned) process; return its figures."""
    with tempfile.TemporaryDirectory(prefix="tagsmith-bench-") as tmp:
        prepared = _prepare(n_customers, seed, Path(tmp))
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_run, args=(tmp, queue))
        child.start()
        result: dict[str, Any] = queue.get()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"tagging child exited with code {child.exitcode}")
    return {**prepared, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, as of {AS_OF}")
    runs = [measure(n, args.seed) for n in (args.reference, args.customers)]
    for r in runs:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
        print(
            f"{r['customers']:>10,} customers ({r['events']:,} events): run {r['run_s']:.1f} s "
            f"[{steps}], peak RSS {r['peak_gib']:.2f} GiB, {r['rows']:,} tag rows in "
            f"{r['tags']} tags, store {r['store_mb']:.0f} MB"
        )
        print(
            f"{'':>10} audience {AUDIENCE!r}: {r['audience_size']:,} customers in "
            f"{r['audience_s']:.2f} s"
        )
    ref, big = runs
    print(
        f"scaling x{big['customers'] / ref['customers']:.1f} customers: "
        f"time x{big['run_s'] / ref['run_s']:.1f}, memory x{big['peak_gib'] / ref['peak_gib']:.1f}"
    )
    ok = big["run_s"] <= BUDGET_SECONDS and big["peak_gib"] <= BUDGET_GIB
    print(f"budget ({BUDGET_SECONDS:.0f} s, {BUDGET_GIB:.0f} GiB): {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
