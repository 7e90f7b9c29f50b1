"""Tag service latency and throughput vs ``mlflow models serve`` of the same churn model.

Usage (on a project with a tagging run, e.g. after ``make demo``)::

    PYTHONPATH=. python benchmarks/serving.py --project .demo

One run on loopback with bounded request loops (aiohttp client in this process):

* ``/tags`` for one customer: sequential (p50, p99), concurrency 8 and 32
  (throughput, p99); 100-customer requests (customers per second);
* ``/explain`` for one customer, sequential (every visible tag's rule trace and the
  champions' SHAP reasons), against ``/tags`` sequential in the same server;
* ``/score`` for one customer posted with about ``--score-events`` events (100
  customers of the fact store nearest that count, in turn), sequential, beside the
  in-process work of the same calls (``LiveScorer.score`` with the latest run's
  thresholds pinned and the served champions, as the service runs it; wall and thread
  CPU per call), so what HTTP, validation, audit and encoding add is visible;
* ``mlflow models serve --env-manager local`` of ``churn-predictor@champion`` with the
  same number of workers, under the same load (one row or 100 rows per request).

Whatever champions exist are served: when the churn gate refused every challenger
(a fresh demo), ``/tags`` is checked for the predicted tags the run did write (rule
tags only without any champion), and the MLflow comparison serves the value
champion, else the newest registered version.

It prints a table and the load generator's own CPU share (CPU seconds of this process
per wall second). Both servers run one worker unless ``--workers`` says otherwise.
``--score-only`` runs the ``/score`` rows alone (in process, then over HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving_http import (  # noqa: E402
    HEADER,
    Result,
    free_port,
    load,
    print_row,
    run_scenario,
    settle,
    start,
    stop,
    wait_ready,
)
from benchmarks.serving_score import Posted, bench_in_process, bench_score, posted_customers  # noqa: E402
from scoring.contract import model_matrix  # noqa: E402
from scoring.loading import load_model  # noqa: E402
from tagsmith.app import SERVICE, service_env  # noqa: E402
from tagsmith.project import Project  # noqa: E402
from training.mlflow_model import typed_example  # noqa: E402


def scenarios(n_requests: int, n_batch: int) -> list[tuple[str, int, int, int]]:
    """(name, rows per request, concurrency, requests)."""
    return [
        ("1 customer, sequential", 1, 1, n_requests),
        ("1 customer, concurrency 8", 1, 8, 2 * n_requests),
        ("1 customer, concurrency 32", 1, 32, 2 * n_requests),
        ("100 customers, concurrency 8", 100, 8, n_batch),
    ]


def bench_tagsmith(
    project: Project,
    ids: list[str],
    predicted: list[str],
    args: argparse.Namespace,
    work: Path,
    posted: Posted | None = None,
) -> list[Result]:
    store = project.api_keys()
    name = f"bench-{os.getpid()}"
    key = store.add(name, args.role)
    port = free_port()
    env = service_env(project)
    env["TAGSMITH_WORKERS"] = str(args.workers)
    log = work / "tagsmith.log"
    process = start(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            SERVICE,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        log,
    )
    results: list[Result] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", process, log)
        print(f"(server settled {settle(process.pid):.0f} s after ready)", flush=True)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        rng = np.random.default_rng(0)
        if posted is not None:
            results.append(bench_score(base, posted, predicted, args, headers, process.pid))
        if args.score_only:
            return results

        def check(status: int, payload: bytes) -> bool:
            if status != 200:
                return False
            got = {t["tag_id"] for r in json.loads(payload)["results"] for t in r["tags"]}
            return set(predicted) <= got and len(got) > len(predicted)

        first = asyncio.run(
            load(
                f"{base}/tags",
                [json.dumps({"customer_ids": ids[:1]}).encode()],
                concurrency=1,
                headers=headers,
                check=check,
            )
        )
        if first[1]:
            raise SystemExit(
                f"/tags did not return rule tags and the predicted tags {sorted(predicted)} "
                "of the latest tagging run."
            )
        for scenario, rows, conc, n in [
            ("warm-up", 1, 8, 500),
            *scenarios(args.requests, args.batches),
        ]:
            bodies = [
                json.dumps({"customer_ids": list(rng.choice(ids, rows, replace=False))}).encode()
                for _ in range(n)
            ]
            result = run_scenario(
                "tagsmith /tags",
                scenario,
                f"{base}/tags",
                bodies,
                rows=rows,
                concurrency=conc,
                headers=headers,
                check=check,
                server_pid=process.pid,
            )
            if scenario != "warm-up":
                results.append(result)
                print_row(result)

        def explained(status: int, payload: bytes) -> bool:
            # Every predicted tag the run wrote comes with its reasons; without any
            # champion (the churn gate refused) the rule traces alone are checked.
            if status != 200:
                return False
            lines = json.loads(payload)["results"][0].get("tags", [])
            reasoned = {t["tag_id"] for t in lines if t["why"] and t["source"] == "model"}
            traced = any(t["why"] and t["source"] == "rule" for t in lines)
            return traced and set(predicted) <= reasoned

        for scenario, n in (("warm-up", 50), ("1 customer, sequential", args.requests)):
            bodies = [
                json.dumps({"customer_ids": list(rng.choice(ids, 1, replace=False))}).encode()
                for _ in range(n)
            ]
            result = run_scenario(
                "tagsmith /explain",
                scenario,
                f"{base}/explain",
                bodies,
                rows=1,
                concurrency=1,
                headers=headers,
                check=explained,
                server_pid=process.pid,
            )
            if scenario != "warm-up":
                results.append(result)
                print_row(result)
    finally:
        stop(process)
        project.api_keys().revoke(name)
    return results


def bench_mlflow(
    project: Project, ids: list[str], args: argparse.Namespace, work: Path
) -> list[Result]:

    os.environ["MLFLOW_TRACKING_URI"] = project.mlflow_tracking_uri
    uri = mlflow_model_uri(project)
    if uri is None:
        print("mlflow models serve: skipped (no version of churn-predictor or value-predictor)")
        return []
    print(f"mlflow models serve of {uri}")
    model = load_model(uri)
    features = snapshot_features(project, ids)
    matrix = model_matrix(features, model.contract)
    columns = model.contract.feature_names

    def split(rows: np.ndarray) -> bytes:
        # The model's pyfunc signature takes categoricals as their level strings.
        typed = typed_example(pd.DataFrame(rows, columns=columns), model.contract)
        data = [
            [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row]
            for row in typed.itertuples(index=False)
        ]
        return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": project.mlflow_tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    log = work / "mlflow.log"
    process = start(
        [
            str(Path(bin_dir) / "mlflow"),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env,
        log,
    )
    results: list[Result] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/ping", process, log)
        headers = {"Content-Type": "application/json"}

        def check(status: int, payload: bytes) -> bool:
            return status == 200 and b"predictions" in payload

        rng = np.random.default_rng(0)
        for scenario, rows, conc, n in [
            ("warm-up", 1, 8, 100),
            *scenarios(max(args.requests // 4, 200), max(args.batches // 2, 50)),
        ]:
            bodies = [split(matrix[rng.choice(len(matrix), rows, replace=False)]) for _ in range(n)]
            result = run_scenario(
                "mlflow models serve",
                scenario,
                f"{base}/invocations",
                bodies,
                rows=rows,
                concurrency=conc,
                headers=headers,
                check=check,
                server_pid=process.pid,
            )
            if scenario != "warm-up":
                results.append(result)
                print_row(result)
    finally:
        stop(process)
    return results


def mlflow_model_uri(project: Project) -> str | None:
    """The champion of churn-predictor (else value-predictor), else their newest version.

    The churn gate may refuse every challenger (a fresh demo), so the comparison falls
    back to whatever version exists instead of stopping.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(project.mlflow_tracking_uri, registry_uri=project.mlflow_tracking_uri)
    for name in ("churn-predictor", "value-predictor"):
        try:
            client.get_model_version_by_alias(name, "champion")
            return f"models:/{name}@champion"
        except MlflowException:  # no such alias (or model)
            continue
    for name in ("churn-predictor", "value-predictor"):
        versions = client.search_model_versions(f"name='{name}'")
        if versions:
            newest = max(int(v.version) for v in versions)
            return f"models:/{name}/{newest}"
    return None


def served_customers(project: Project) -> tuple[list[str], list[str]]:
    """(ids of the latest snapshot's customers, the predicted tags it holds).

    Customers with a predicted tag are preferred; without any champion the snapshot
    holds rule tags only and the benchmark serves those.
    """
    store = project.tag_store()
    if store.latest_as_of() is None:
        raise SystemExit("need a tagging run first: tagsmith tags run")
    snap = store.snapshot()
    sources = snap["source"].astype(str)
    predicted = sorted(set(snap.loc[sources == "model", "tag_id"].astype(str)))
    rows = snap[snap["tag_id"].astype(str).isin(predicted)] if predicted else snap
    ids = sorted(set(rows["customer_id"].astype(str)))
    if predicted:
        # Only customers with every predicted tag, so every answer can be checked.
        per = rows.groupby(rows["customer_id"].astype(str))["tag_id"].nunique()
        ids = sorted(per.index[per == len(predicted)])
    return ids, predicted


def snapshot_features(project: Project, ids: list[str]) -> Any:
    from features.build import build_features

    facts = project.fact_store()
    as_of = project.tag_store().latest_as_of()
    if as_of is None:
        raise SystemExit("no tagging run in the project: run `tagsmith tags run` first")
    features = build_features(
        facts.load_customers(), facts.load_events(), as_of=as_of, spec=project.feature_spec()
    )
    return features[features["customer_id"].isin(set(ids))].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path(".demo"))
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="sequential requests (concurrent runs send twice as many)",
    )
    parser.add_argument("--batches", type=int, default=400, help="100-customer requests")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--role", default="marketing")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument(
        "--score-events", type=int, default=100, help="events per customer posted to /score"
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="only the /score rows (in process, then over HTTP): no /tags, /explain, MLflow",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    project = Project.load(args.project)
    ids, predicted = served_customers(project)
    if len(ids) < 100:
        raise SystemExit(f"need >= 100 customers in the latest tagging run, got {len(ids)}")
    work = project.data_dir / "serving" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    served = ", ".join(predicted) or "none (no champion: rule tags only)"
    print(
        f"{len(ids)} customers; predicted tags served: {served}; "
        f"{args.workers} worker(s) per server; {os.cpu_count()} cores"
    )
    posted = posted_customers(project, args.score_events)
    print(
        f"/score: {len(posted.ids)} customers posted in turn, "
        f"{posted.mean_events:.0f} events each on average"
    )
    print(HEADER)
    in_process = bench_in_process(project, posted, args.requests)
    print_row(in_process)
    results = [in_process, *bench_tagsmith(project, ids, predicted, args, work, posted)]
    if not args.skip_mlflow and not args.score_only:
        results += bench_mlflow(project, ids[:5000], args, work)
    summarize(results)
    if args.json:
        args.json.write_text(
            json.dumps(
                [r.__dict__ | {"rps": r.rps, "rows_per_s": r.rows_per_s} for r in results], indent=1
            )
        )


def summarize(results: list[Result]) -> None:
    by = {(r.server, r.scenario): r for r in results}
    seq = by.get(("tagsmith /tags", "1 customer, sequential"))
    c32 = by.get(("tagsmith /tags", "1 customer, concurrency 32"))
    batch = by.get(("tagsmith /tags", "100 customers, concurrency 8"))
    ml32 = by.get(("mlflow models serve", "1 customer, concurrency 32"))
    print("\nTargets:")
    score = by.get(("tagsmith /score", "1 customer, sequential"))
    work = by.get(("in process LiveScorer", "/score work, 1 customer, seq"))
    if score:
        print(
            f"  1-customer /score p99 sequential over HTTP: {score.p99_ms:.2f} ms (target <= 5 ms)"
        )
    if score and work:
        print(
            f"    in process (LiveScorer.score, same customers): p50 {work.p50_ms:.2f} ms, "
            f"p99 {work.p99_ms:.2f} ms, thread CPU {work.server_cpu_ms:.2f} ms per call; "
            f"HTTP and the service add {score.p50_ms - work.p50_ms:.2f} ms at p50, "
            f"{score.server_cpu_ms - work.server_cpu_ms:.2f} ms of server CPU per request"
        )
    if seq:
        print(f"  1-customer /tags p99 sequential: {seq.p99_ms:.2f} ms (target <= 5 ms)")
    explain = by.get(("tagsmith /explain", "1 customer, sequential"))
    if explain:
        ratio = f" ({explain.p99_ms / seq.p99_ms:.1f}x /tags)" if seq else ""
        print(
            f"  1-customer /explain p99 sequential: {explain.p99_ms:.2f} ms{ratio} "
            "(target <= 20 ms)"
        )
    if c32:
        print(f"  concurrency 32: {c32.rps:.0f} req/s, p99 {c32.p99_ms:.1f} ms (target p99 <= 100)")
    if c32 and ml32:
        print(f"  vs mlflow models serve at 32: {c32.rps / ml32.rps:.1f}x (target >= 5x)")
    if batch:
        print(
            f"  100-customer requests: {batch.rows_per_s:.0f} customers/s (target >= 20,000)"
            f"; server CPU per customer {batch.server_cpu_ms / 100:.3f} ms, i.e. "
            f"{100_000 / batch.server_cpu_ms:.0f} customers per CPU-second"
        )
    import psutil

    print(
        f"  machine load average during the run: {os.getloadavg()[0]:.1f} on "
        f"{psutil.cpu_count()} cores (other processes compete for the same cores)"
    )


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
