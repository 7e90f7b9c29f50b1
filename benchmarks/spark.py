"""Benchmark: ``tags run`` on the local engine vs the Spark engine (local[1], local[2]).

The synthetic facts are generated and written to a fact store first (not timed). Each
run then happens in its own child process that reads the fact store as ``tagsmith tags
run`` does and records its tags in its own tag store. The parent samples the resident
memory of the child's whole process tree every 0.2 s: the driver (the child's Python),
the JVM (in local mode the driver and the executors share it) and the Python workers
Spark starts (one per running task). All three runs must store the same tag counts.

What it shows: the fixed cost a cluster must amortise (JVM start, shuffling every
event to its customer's partition through Arrow, two passes when rules use population
aggregates) and how the Spark run's time changes from one to two executor cores.

Timings on a shared machine move with its load: the 1-minute load average is printed
before and after every run, and the comparisons are ratios within this process.
Generated data goes under ``$TMPDIR`` (point it at a roomy disk: 1M customers is
~2 GiB of Parquet plus Spark's shuffle files).

Usage::

    PYTHONPATH=. python benchmarks/spark.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

AS_OF = "2025-01-01"
MODES = ("local", "local[1]", "local[2]")


def _prepare(n_customers: int, seed: int, folder: Path) -> dict[str, Any]:
    import pandas as pd

    from spark.config import SparkConfig
    from synthetic import generate
    from tagsmith.config import ProjectConfig
    from tagsmith.project import Project

    began = time.perf_counter()
    data = generate(n_customers, start="2023-01-01", end="2024-12-31", seed=seed)
    # In local mode the executors live in the driver's JVM: give it room to shuffle.
    spark = SparkConfig(conf={"spark.driver.memory": "4g"})
    project = Project.init(folder, config=ProjectConfig(spark=spark))
    facts = project.fact_store()
    with facts.lock():
        facts.write(
            customers=data.customers,
            events=data.events,
            log_entries=[],
            now=pd.Timestamp("2025-01-01", tz="UTC"),
        )
    return {"events": len(data.events), "generate_s": time.perf_counter() - began}


def child(folder: str, mode: str) -> None:
    """One run (in its own process): print its figures as one JSON line."""
    from scoring.batch import run_tagging
    from tags.store import TagStore
    from tagsmith.project import Project
    from tagsmith.spark_engine import SparkTagging, session_for

    project = Project.load(Path(folder))
    began = time.perf_counter()
    engine = None
    if mode != "local":
        session_for(project, mode)  # started here so its cost is reported apart
        engine = SparkTagging(project, mode)
    started = time.perf_counter()
    store = TagStore(Path(folder) / f"tags-{mode}.duckdb")
    result = run_tagging(
        facts=project.facts(),
        catalogue=project.catalogue(),
        store=store,
        as_of=AS_OF,
        spec=project.feature_spec(),
        engine=engine,
        force=True,
    )
    done = time.perf_counter()
    counts = {str(r["tag_id"]): int(r["rows"]) for r in result.counts.to_dict("records")}
    print(
        json.dumps(
            {
                "start_s": started - began,
                "run_s": done - started,
                "customers": result.run.n_customers,
                "rows": result.run.n_rows,
                "steps": result.timings,
                "counts": counts,
            }
        ),
        flush=True,
    )


def _tree_rss(root: Any) -> dict[str, int]:
    """Resident bytes of the driver, the JVM and the Python workers under ``root``."""
    import psutil

    out = {"driver": 0, "jvm": 0, "workers": 0}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            rss = proc.memory_info().rss
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        if proc.pid == root.pid:
            out["driver"] += rss
        elif "java" in name:
            out["jvm"] += rss
        else:
            out["workers"] += rss
    return out


def measure(folder: str, mode: str) -> dict[str, Any]:
    """Run ``mode`` in a child process, sampling its tree's memory; its figures."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--folder", folder],
        stdout=subprocess.PIPE,
        text=True,
    )
    root = psutil.Process(proc.pid)
    peak = {"driver": 0, "jvm": 0, "workers": 0, "total": 0}
    while proc.poll() is None:
        now = _tree_rss(root)
        for key, value in now.items():
            peak[key] = max(peak[key], value)
        peak["total"] = max(peak["total"], sum(now.values()))
        time.sleep(0.2)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run exited with code {proc.returncode}")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {**figures, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.folder, args.child)
        return

    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"as of {AS_OF}"
    )
    gib = 2**30
    with tempfile.TemporaryDirectory(prefix="tagsmith-spark-bench-") as tmp:
        prepared = _prepare(args.customers, args.seed, Path(tmp))
        print(
            f"{args.customers:,} customers, {prepared['events']:,} events "
            f"(generated in {prepared['generate_s']:.0f} s)",
            flush=True,
        )
        runs = {}
        for mode in MODES:  # each line as soon as its run ends
            load_before = os.getloadavg()[0]
            r = runs[mode] = measure(tmp, mode)
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
            p = r["peak"]
            engine = "local engine" if mode == "local" else f"spark {mode}"
            print(
                f"{engine:<16} run {r['run_s']:6.1f} s (+ session start {r['start_s']:.1f} s) "
                f"[{steps}]; peak RSS driver {p['driver'] / gib:.2f} GiB, JVM "
                f"{p['jvm'] / gib:.2f} GiB, python workers {p['workers'] / gib:.2f} GiB, "
                f"all {p['total'] / gib:.2f} GiB; load {load_before:.1f} -> "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
    local, one, two = (runs[m] for m in MODES)
    print(
        f"spark local[2] / local engine: time x{two['run_s'] / local['run_s']:.2f}, "
        f"peak memory x{two['peak']['total'] / local['peak']['total']:.2f}"
    )
    print(f"spark local[1] -> local[2]: time x{two['run_s'] / one['run_s']:.2f}")
    same = local["counts"] == one["counts"] == two["counts"]
    print(f"tag counts equal on all three runs: {same} ({local['rows']:,} tag rows)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
