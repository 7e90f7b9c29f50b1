"""Benchmark: the cost of encryption at rest on ``tags run`` and ``/tags``.

The same synthetic facts go into two projects, one without a key and one with
``governance.encryption.key_file`` (a key file outside both projects). Each measurement
runs in a fresh spawned child, alternating plain and encrypted, ``--repeats`` times:

* ``tags run``: a full tagging run (features -> rules -> tag store), forced;
* ``/tags``: the service runtime started on the project (snapshot and features loaded
  from the encrypted stores), then ``--requests`` lookups of 100 random customers
  each through ``ServingRuntime.tags`` (the handler behind ``POST /tags``, minus HTTP).

Prints each figure, the median encrypted/plain ratio, and whether the 10 % target holds.

Usage::

    PYTHONPATH=. python benchmarks/encryption.py [--customers 1000000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

AS_OF = "2025-01-01"
TARGET = 1.10


def _prepare(n_customers: int, seed: int, root: Path) -> dict[str, Any]:
    import pandas as pd
    import yaml

    from features.crypto import generate_key
    from synthetic import generate
    from tags.policy import write_default_policy
    from tagsmith.project import Project

    began = time.perf_counter()
    data = generate(n_customers, start="2023-01-01", end="2024-12-31", seed=seed)
    gen_s = time.perf_counter() - began
    key_file = root / "keys" / "tagsmith.key"
    key_file.parent.mkdir()
    key_file.write_text(generate_key())
    for name in ("plain", "encrypted"):
        project = Project.init(root / name)
        write_default_policy(project.policy_path)
        if name == "encrypted":
            config = yaml.safe_load(project.config_path.read_text())
            config["governance"]["encryption"]["key_file"] = str(key_file)
            project.config_path.write_text(yaml.safe_dump(config))
            project = Project.load(root / name)
        facts = project.fact_store()
        with facts.lock():
            facts.write(
                customers=data.customers,
                events=data.events,
                log_entries=[],
                now=pd.Timestamp("2025-01-01", tz="UTC"),
            )
    return {"events": len(data.events), "generate_s": gen_s}


def _tag_run(folder: str, queue: Any) -> None:
    from scoring.batch import run_tagging
    from tagsmith.project import Project

    project = Project.load(Path(folder))
    began = time.perf_counter()
    result = run_tagging(
        facts=project.fact_store(),
        catalogue=project.catalogue(),
        store=project.tag_store(),
        as_of=AS_OF,
        spec=project.feature_spec(),
        force=True,
    )
    queue.put({"run_s": time.perf_counter() - began, "steps": result.timings})


def _serve(folder: str, requests: int, queue: Any) -> None:
    import numpy as np

    from serving.access import Caller
    from tagsmith.app import build_runtime
    from tagsmith.project import Project

    project = Project.load(Path(folder))
    began = time.perf_counter()
    runtime = build_runtime(project)
    runtime.start()
    load_s = time.perf_counter() - began
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    caller = Caller("benchmark", "executive")
    batches = [list(rng.choice(ids, 100, replace=False)) for _ in range(requests)]
    began = time.perf_counter()
    for batch in batches:
        runtime.tags_json(caller, batch)
    per_request_ms = 1000 * (time.perf_counter() - began) / requests
    runtime.stop()
    queue.put({"load_s": load_s, "request_ms": per_request_ms})


def _child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    result: dict[str, Any] = queue.get()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"benchmark child exited with code {child.exitcode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tagsmith-enc-bench-") as tmp:
        root = Path(tmp)
        prep = _prepare(args.customers, args.seed, root)
        print(
            f"{args.customers:,} customers, {prep['events']:,} events "
            f"(generated in {prep['generate_s']:.1f} s)"
        )
        figures: dict[str, dict[str, list[float]]] = {
            k: {"run_s": [], "load_s": [], "request_ms": []} for k in ("plain", "encrypted")
        }
        for i in range(args.repeats):
            for name in ("plain", "encrypted") if i % 2 == 0 else ("encrypted", "plain"):
                run = _child(_tag_run, str(root / name))
                served = _child(_serve, str(root / name), args.requests)
                figures[name]["run_s"].append(run["run_s"])
                figures[name]["load_s"].append(served["load_s"])
                figures[name]["request_ms"].append(served["request_ms"])
                steps = ", ".join(f"{k} {v:.1f}" for k, v in run["steps"].items())
                print(
                    f"  {name:<9} tags run {run['run_s']:.1f} s [{steps}]; service load "
                    f"{served['load_s']:.1f} s, /tags {served['request_ms']:.2f} ms per "
                    "100-customer request",
                    flush=True,
                )
        worst = 0.0
        for what, label in (
            ("run_s", "tags run"),
            ("request_ms", "/tags request"),
            ("load_s", "service start (snapshot load)"),
        ):
            plain = statistics.median(figures["plain"][what])
            enc = statistics.median(figures["encrypted"][what])
            ratio = enc / plain
            if what != "load_s":
                worst = max(worst, ratio)
            print(f"{label:<30} plain {plain:8.2f}  encrypted {enc:8.2f}  ratio {ratio:.3f}")
        met = worst <= TARGET
        print(f"target (tags run and /tags at most {TARGET:.2f}x): {'met' if met else 'MISSED'}")
        sys.exit(0 if met else 1)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
