"""Tag service CPU per request of this checkout against another (a reference commit), interleaved.

Usage (each checkout with its own ``.venv`` and a ``make demo`` project)::

    git worktree add /tmp/base 5f2cee8 && (cd /tmp/base && make setup demo)
    PYTHONPATH=. python benchmarks/serving_ab.py --project .demo \\
        --reference /tmp/base --reference-project /tmp/base/.demo --rounds 6

Both services run at once (one worker each, loopback); each round sends every scenario
to one, then to the other (the order flips every round), so both meet the same load
from other processes over the run. Server CPU (the service's process tree, user +
system) per request is the figure: on a shared machine it drifts far less than
latency. It prints, per scenario, the median over rounds of each service's CPU per
request, throughput and p99, and their ratio (this checkout / reference).

The reference checkout is asked, through its own interpreter, for its service target,
environment and a fresh API key (round 1's ``tagsmith.serving_app`` layout is
understood too); the key is revoked at the end. Requests name the same customers on
both sides (customers of this project's latest snapshot that the reference project
also serves, e.g. both demos generated with the same seed).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tagsmith.app import SERVICE, service_env  # noqa: E402
from tagsmith.project import Project  # noqa: E402


def _sibling(name: str) -> ModuleType:
    """benchmarks/serving.py (its name clashes with the ``serving`` package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(name))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _sibling("serving.py")

# Run by the reference checkout's interpreter: its service target, environment and a key.
_REFERENCE_SETUP = """
import json, sys
from pathlib import Path
from serving.keys import ApiKeyStore
from tagsmith.project import Project
try:
    from tagsmith.app import SERVICE, service_env
except ImportError:  # round 1 (5f2cee8): the service module finds its runtime by name
    from tagsmith.serving_app import service_env
    SERVICE = "serving.service:TagService"
project = Project.load(Path(sys.argv[1]))
store = ApiKeyStore(project.api_keys_path)
if sys.argv[2] == "revoke":
    store.revoke(sys.argv[3])
else:
    key = store.add(sys.argv[3], sys.argv[4])
    print(json.dumps({"service": SERVICE, "env": service_env(project, base={}), "key": key}))
"""


class Server:
    """One running tag service: how to reach it and its process."""

    def __init__(
        self, label: str, argv: list[str], env: dict[str, str], key: str, cwd: Path, log: Path
    ) -> None:
        self.label = label
        self.port = bench.free_port()
        self.log = log
        self.key = key
        # ``bentoml serve`` imports the service relative to its working directory.
        with log.open("wb") as fh:
            self.process = subprocess.Popen(
                [*argv, "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> None:
        bench.wait_ready(f"{self.url}/readyz", self.process, self.log, timeout=300)

    def stop(self) -> None:
        bench.stop(self.process)


def reference_setup(python: Path, checkout: Path, project: Path, *args: str) -> str:
    """Run the reference checkout's setup snippet; its standard output."""
    done = subprocess.run(
        [str(python), "-c", _REFERENCE_SETUP, str(project), *args],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"The reference checkout {checkout} failed to set up:\n{done.stderr[-3000:]}"
        )
    return done.stdout


def scenarios(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(name, customers per request, concurrency, requests per round)."""
    return [
        ("100 customers, concurrency 8", 100, 8, args.batches),
        ("1 customer, concurrency 8", 1, 8, args.requests),
        ("1 customer, sequential", 1, 1, args.requests // 2),
    ]


def run_round(
    servers: list[Server], ids: list[str], args: argparse.Namespace, rng: np.random.Generator
) -> dict[tuple[str, str], dict[str, float]]:
    """Every scenario on every server (same request bodies); figures per (scenario, label)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, rows, conc, n in scenarios(args):
        bodies = [
            json.dumps({"customer_ids": list(rng.choice(ids, rows, replace=False))}).encode()
            for _ in range(n)
        ]
        for server in servers:
            headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
            cpu0 = bench.server_cpu(server.process.pid)
            latencies, errors, wall, _ = asyncio.run(
                bench.load(
                    f"{server.url}/tags",
                    bodies,
                    concurrency=conc,
                    headers=headers,
                    check=lambda status, _payload: status == 200,
                )
            )
            # The audit writer's last batch (written up to 50 ms after its requests)
            # belongs to this window.
            time.sleep(0.2)
            cpu = bench.server_cpu(server.process.pid) - cpu0
            if errors:
                raise SystemExit(f"{server.label}: {errors} of {n} /tags requests failed ({name})")
            out[(name, server.label)] = {
                "cpu_ms": 1000 * cpu / n,
                "rps": n / wall,
                "p99_ms": float(np.percentile(np.asarray(latencies) * 1000, 99)),
            }
    return out


def common_ids(project: Project, reference: Path, python: Path, checkout: Path) -> list[str]:
    """Customers of this project's latest snapshot that the reference project serves too."""
    ids, _ = bench.served_customers(project)
    code = (
        "import sys, json, pyarrow.parquet as pq; from pathlib import Path; "
        "from tagsmith.project import Project; p = Project.load(Path(sys.argv[1])); "
        "print(json.dumps(sorted(set(pq.read_table(p.facts_dir / 'customers.parquet', "
        "columns=['customer_id']).column(0).to_pylist()))))"
    )
    done = subprocess.run(
        [str(python), "-c", code, str(reference)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return ids  # another fact layout: trust the same seed
    theirs = set(json.loads(done.stdout))
    return [c for c in ids if c in theirs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path(".demo"))
    parser.add_argument("--reference", type=Path, required=True, help="the other checkout")
    parser.add_argument("--reference-project", type=Path, help="default: REFERENCE/.demo")
    parser.add_argument("--reference-python", type=Path, help="default: REFERENCE/.venv")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=150, help="100-customer requests")
    parser.add_argument("--requests", type=int, default=600, help="1-customer requests")
    parser.add_argument("--role", default="marketing")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    args = parser.parse_args()
    checkout = args.reference.resolve()
    ref_project = (args.reference_project or checkout / ".demo").resolve()
    ref_python = args.reference_python or checkout / ".venv" / "bin" / "python"
    project = Project.load(args.project)
    name = f"ab-{os.getpid()}"
    setup = json.loads(reference_setup(ref_python, checkout, ref_project, "add", name, args.role))
    key = project.api_keys().add(name, args.role)
    ids = common_ids(project, ref_project, ref_python, checkout)
    if len(ids) < 100:
        raise SystemExit(f"need >= 100 customers both projects serve, got {len(ids)}")
    here = service_env(project)
    here["TAGSMITH_WORKERS"] = "1"
    there = {**os.environ, **setup["env"], "TAGSMITH_WORKERS": "1"}
    work = project.data_dir / "serving" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    servers = [
        Server(
            "this",
            [sys.executable, "-m", "bentoml", "serve", SERVICE],
            here,
            key,
            REPO,
            work / "ab-this.log",
        ),
        Server(
            "reference",
            [str(ref_python), "-m", "bentoml", "serve", setup["service"]],
            there,
            setup["key"],
            checkout,
            work / "ab-reference.log",
        ),
    ]
    rounds: list[dict[tuple[str, str], dict[str, float]]] = []
    try:
        for server in servers:
            server.ready()
        rng = np.random.default_rng(0)
        run_round(servers, ids, argparse.Namespace(batches=50, requests=200), rng)  # warm-up
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else servers[::-1]
            rounds.append(run_round(order, ids, args, rng))
            print(
                f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()
        project.api_keys().revoke(name)
        reference_setup(ref_python, checkout, ref_project, "revoke", name)
    report(rounds, args)
    if args.json:
        args.json.write_text(
            json.dumps([{f"{s}|{lab}": v for (s, lab), v in r.items()} for r in rounds], indent=1)
        )


def report(rounds: list[dict[tuple[str, str], dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"\n{'scenario':<30}{'figure':<16}{'this':>10}{'reference':>11}{'this/ref':>10}"
        f"   (median of {len(rounds)} interleaved rounds)"
    )
    for name, *_ in scenarios(args):
        for figure, label in (("cpu_ms", "CPU ms/req"), ("rps", "req/s"), ("p99_ms", "p99 ms")):
            mine = statistics.median(r[(name, "this")][figure] for r in rounds)
            theirs = statistics.median(r[(name, "reference")][figure] for r in rounds)
            print(f"{name:<30}{label:<16}{mine:>10.2f}{theirs:>11.2f}{mine / theirs:>10.2f}")
    per_round = [
        r[("100 customers, concurrency 8", "this")]["cpu_ms"]
        / r[("100 customers, concurrency 8", "reference")]["cpu_ms"]
        for r in rounds
    ]
    print(
        "100-customer CPU ratio per round: "
        + ", ".join(f"{x:.2f}" for x in per_round)
        + f"; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
