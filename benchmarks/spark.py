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


def _tree_rss(root: Any, cpu: dict[int, tuple[str, float]]) -> dict[str, int]:
    """Resident bytes of the driver, the JVM and the Python workers under ``root``;
    records each process's CPU seconds so far in ``cpu`` (pid -> group, seconds)."""
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
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        group = "driver" if proc.pid == root.pid else "jvm" if "java" in name else "workers"
        out[group] += rss
        cpu[proc.pid] = (group, times.user + times.system)
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
    # CPU seconds, the figure a loaded machine distorts least: each process's last
    # sample (a Python worker that exits between samples loses < 0.2 s of it).
    cpu: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        now = _tree_rss(root, cpu)
        for key, value in now.items():
            peak[key] = max(peak[key], value)
        peak["total"] = max(peak["total"], sum(now.values()))
        time.sleep(0.2)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run exited with code {proc.returncode}")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    seconds = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    for group, used in cpu.values():
        seconds[group] += used
    return {**figures, "peak": peak, "cpu": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma list of runs among local, local[1], local[2], in the order to run them",
    )
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
        # In the order given: the runs that matter most first on a time budget.
        modes = [m for m in args.modes.split(",") if m in MODES]
        for mode in modes:  # each line as soon as its run ends
            load_before = os.getloadavg()[0]
            r = runs[mode] = measure(tmp, mode)
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
            p, c = r["peak"], r["cpu"]
            engine = "local engine" if mode == "local" else f"spark {mode}"
            print(
                f"{engine:<16} run {r['run_s']:6.1f} s (+ session start {r['start_s']:.1f} s) "
                f"[{steps}]; CPU {sum(c.values()):.1f} s (driver {c['driver']:.1f}, JVM "
                f"{c['jvm']:.1f}, python workers {c['workers']:.1f}, whole process with "
                f"start-up); peak RSS driver {p['driver'] / gib:.2f} GiB, JVM "
                f"{p['jvm'] / gib:.2f} GiB, python workers {p['workers'] / gib:.2f} GiB, "
                f"all {p['total'] / gib:.2f} GiB; load {load_before:.1f} -> "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
    _compare(runs)


def _compare(runs: dict[str, dict[str, Any]]) -> None:
    """Print the ratios between the runs made; exit 1 unless their tag counts agree."""
    local, one, two = (runs.get(m) for m in MODES)
    cpu = {mode: sum(r["cpu"].values()) for mode, r in runs.items()}
    for name, spark in (("local[2]", two), ("local[1]", one)):
        if local is not None and spark is not None:
            print(
                f"spark {name} / local engine: time x{spark['run_s'] / local['run_s']:.2f}, "
                f"CPU x{cpu[name] / cpu['local']:.2f}, peak memory "
                f"x{spark['peak']['total'] / local['peak']['total']:.2f}"
            )
    if one is not None and two is not None:
        print(
            f"spark local[1] -> local[2]: time x{two['run_s'] / one['run_s']:.2f}, "
            f"CPU x{cpu['local[2]'] / cpu['local[1]']:.2f}"
        )
    counts = [r["counts"] for r in runs.values()]
    same = all(c == counts[0] for c in counts)
    rows = next(iter(runs.values()))["rows"]
    print(f"tag counts equal on all {len(runs)} runs: {same} ({rows:,} tag rows)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
