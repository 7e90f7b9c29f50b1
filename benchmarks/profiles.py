"""Customer profiles, ``/explain`` and the web console on a large project (not a test).

On the project of ``benchmarks/big_project.py`` (built when missing; 1M customers by
default), in one process after start-up:

1. **customers show**: what ``tagsmith customers show ID`` does after its imports (a
   fresh explainer over the project's stores, the profile of one customer, its text
   lines), for ``--customers-shown`` random customers: first call, p50, p95, max.
   References: the same profiles with the customer's facts read after the tag store
   query rather than beside it (alternating call by call), and one whole CLI process
   (interpreter start-up and imports included).
2. **/explain**: the service runtime (``tagsmith.app.build_runtime``: the snapshot and
   the champions in memory; the garbage collector frozen after start-up as the service
   does; timed once real-time tagging's background load at start-up has finished),
   ``explain`` of one customer, sequential, p50/p99 (wall and CPU); against
   ``tags`` of the same customers in the same runtime, and against the reference of the
   per-request pandas path ``/explain`` ran before (one-row slices traced and explained,
   the trace and reasons only: no audit, no JSON), with the ratios. (No HTTP framing:
   ``benchmarks/serving.py`` measures both endpoints over HTTP.)
3. **console**: the ``/ui`` app on the same project (Starlette ``TestClient``, signed in
   as ``--role``), ``--requests`` requests per page, p50/p95: catalogue, a tag page, a
   customer profile, audiences (page and the as-you-type count fragment, for several
   expressions), models, runs.

    PYTHONPATH=. python benchmarks/profiles.py --root /tmp/p1m [--customers 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

from benchmarks.big_project import ensure_project  # noqa: E402

# Seconds to wait for real-time tagging's background load before timing requests.
WARM_BOUND_S = 300.0

EXPRESSIONS = (
    "lifecycle_stage = 'active'",
    "churn_risk = 'high' and value_tier in ('high', 'medium')",
    "rfm_segment = 'important_value' or (loyalty_tier = 'high' and not old_customer)",
)


def _ms(values: list[float]) -> dict[str, float]:
    a = 1000 * np.asarray(values)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
    }


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class _Inline:
    """An executor that runs the submitted call at once (the reference: no overlap)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        from concurrent.futures import Future

        done: Future[Any] = Future()
        done.set_result(fn(*args))
        return done


def bench_show(project: Any, ids: list[str]) -> dict[str, Any]:
    import explain.lookup as lookup
    from explain.render import profile_lines
    from tagsmith.explaining import customer_explainer

    visible = [t.id for t in project.catalogue()]  # an admin's view: every tag
    pool = lookup._FACT_READS
    times: list[float] = []
    sequential: list[float] = []
    for k, cid in enumerate(ids):
        # Reference, alternating with the real path: the fact read after the tag store
        # query instead of beside it (what a profile did before).
        for inline in (False, True) if k % 2 else (True, False):
            lookup._FACT_READS = _Inline() if inline else pool  # type: ignore[assignment]
            t = time.perf_counter()
            profile = customer_explainer(project).profile(cid, visible_tags=visible)
            lines = list(profile_lines(profile))
            (sequential if inline else times).append(time.perf_counter() - t)
            assert lines, cid
            assert profile.tags, cid
    lookup._FACT_READS = pool
    env = {**os.environ, "PYTHONPATH": str(_HERE.parent)}
    argv = [sys.executable, "-m", "tagsmith", "--project", str(project.root)]
    t = time.perf_counter()
    done = subprocess.run(
        [*argv, "customers", "show", ids[0], "--role", "admin"],
        env=env,
        capture_output=True,
        timeout=600,
    )
    cli_s = time.perf_counter() - t
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    t = time.perf_counter()
    subprocess.run([*argv, "--help"], env=env, capture_output=True, timeout=600, check=True)
    help_s = time.perf_counter() - t
    return {
        "first_ms": round(1000 * times[0], 1),
        "after_first": _ms(times[1:]),
        "reference_reads_one_after_the_other": _ms(sequential[1:]),
        "p50_over_reference_p50": round(
            float(np.median(times[1:])) / float(np.median(sequential[1:])), 2
        ),
        "cli_process_s": round(cli_s, 2),
        "cli_help_process_s": round(help_s, 2),
    }


def _cpu_ms(
    fn: Callable[[str], Any], ids: list[str], thread: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``fn(cid)`` per customer (CPU time shows the work itself
    when other processes hold the cores). Process CPU counts the service's background
    threads too (the audit writer appends and fsyncs each request's entry); the
    calling thread's own CPU seconds go to ``thread`` when given."""
    wall, cpu = [], []
    for cid in ids:
        t, c, own = time.perf_counter(), time.process_time(), time.thread_time()
        fn(cid)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if thread is not None:
            thread.append(time.thread_time() - own)
    return wall, cpu


def _pandas_rows_explain(runtime: Any) -> Callable[[str], None]:
    """The reference: what ``/explain`` did per request before the snapshot's columns
    were converted once (a pandas one-row slice traced and explained per call)."""
    from explain.models import explain_model
    from explain.rules import needed_columns, trace_tags

    explainer = runtime.explainer
    state = runtime.keeper.state
    index = state.snapshot
    rules = explainer._rules
    narrow = index.features[needed_columns(rules, index.features.columns)]

    def run(cid: str) -> None:
        pos = index.positions[cid]
        trace_tags(rules, narrow.iloc[pos : pos + 1], index.thresholds)
        for live in state.models.values():
            model = live.model
            explain_model(
                model.booster,
                model.contract,
                index.features.iloc[pos : pos + 1],
                name=model.name,
                version=model.version,
                words=explainer.words,
                stored_score=float(live.scores[pos]),
            )

    return run


def bench_explain(project: Any, ids: list[str]) -> dict[str, Any]:
    from serving.access import Caller
    from tagsmith.app import build_runtime

    runtime = build_runtime(project)
    t = time.perf_counter()
    runtime.start()
    start_s = time.perf_counter() - t
    # Real-time tagging loads its facts and models on a background thread after start
    # (serving.runtime); requests timed meanwhile share the 2 cores with that load, so
    # the steady-state figures start once it is done (a thread that stays to run the
    # NATS consumer is not waited for beyond the bound).
    t = time.perf_counter()
    for thread in threading.enumerate():
        if thread.name == "tagsmith-live-warm":
            thread.join(timeout=WARM_BOUND_S)
    warm_s = time.perf_counter() - t
    # The collector as the service sets it up after start-up (serving/service.py).
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    caller = Caller("bench", "marketing")
    try:
        for cid in ids[:20]:  # warm-up
            runtime.explain(caller, [cid])
        explain_thread: list[float] = []
        explain, explain_cpu = _cpu_ms(lambda c: runtime.explain(caller, [c]), ids, explain_thread)
        tags = [_timed(partial(runtime.tags, caller, [c]), 1)[0] for c in ids]
        before = _pandas_rows_explain(runtime)
        for cid in ids[:20]:
            before(cid)
        ref, ref_cpu = _cpu_ms(before, ids)
        answer = runtime.explain(caller, [ids[0]])
    finally:
        runtime.stop()
    reasons = sum(len(t.get("why", {}) or {}) for t in answer["results"][0].get("tags") or [])
    p99 = float(np.percentile(explain, 99))
    return {
        "runtime_start_s": round(start_s, 1),
        "live_warm_up_waited_s": round(warm_s, 1),
        "explain": _ms(explain),
        "explain_cpu": _ms(explain_cpu),
        "explain_request_thread_cpu": _ms(explain_thread),
        "tags": _ms(tags),
        "reference_pandas_rows_work_only": _ms(ref),
        "reference_pandas_rows_cpu": _ms(ref_cpu),
        "explain_p99_over_reference_p99": round(p99 / float(np.percentile(ref, 99)), 2),
        "explain_cpu_p50_over_reference_cpu_p50": round(
            float(np.percentile(explain_cpu, 50)) / float(np.percentile(ref_cpu, 50)), 2
        ),
        "explain_tags_shown": len(answer["results"][0].get("tags") or []),
        "explain_why_fields": reasons,
    }


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None, text[:500]
    return found.group(1)


def bench_console(project: Any, ids: list[str], role: str, n: int) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from console.app import create_app
    from tagsmith.console_app import build_console_context

    key = project.api_keys().add(f"bench-{time.time_ns()}", role)
    app = create_app(build_console_context(project))
    out: dict[str, Any] = {"role": role}
    t = time.perf_counter()
    with TestClient(app, base_url="http://testserver") as client:
        page = client.get("/ui/login")
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert token is not None
        signed = client.post(
            "/ui/login",
            data={"token": token.group(1), "key": key, "next": "/ui/catalogue"},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text[:500]
        first = client.get("/ui/catalogue")
        assert first.status_code == 200
        out["first_page_s"] = round(time.perf_counter() - t, 2)
        csrf = _csrf(client.get("/ui/customers").text)
        refs = []
        for cid in ids[:n]:
            found = client.post(
                "/ui/customers", data={"csrf": csrf, "customer_id": cid}, follow_redirects=False
            )
            assert found.status_code == 303, found.text[:500]
            refs.append(found.headers["location"])

        def get(path: str, **params: str) -> Callable[[], None]:
            def call() -> None:
                r = client.get(path, params=params or None)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])

            return call

        pages: dict[str, list[float]] = {
            "catalogue": _timed(get("/ui/catalogue"), n),
            "tag lifecycle_stage": _timed(get("/ui/catalogue/lifecycle_stage"), n),
            "tag churn_risk": _timed(get("/ui/catalogue/churn_risk"), n),
            "customer profile": [_timed(get(ref), 1)[0] for ref in refs],
            "models": _timed(get("/ui/models"), n),
            "runs": _timed(get("/ui/runs"), n),
        }
        for expr in EXPRESSIONS:
            pages[f"audiences page: {expr}"] = _timed(get("/ui/audiences", expr=expr), n)
            pages[f"audience count: {expr}"] = _timed(get("/ui/audiences/preview", expr=expr), n)
    out["pages"] = {name: _ms(times) for name, times in pages.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--customers-shown", type=int, default=30)
    parser.add_argument("--explains", type=int, default=300)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--role", default="marketing")
    parser.add_argument("--only", choices=["show", "explain", "console"], nargs="+")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    project = ensure_project(args.root, args.customers)
    snap = project.tag_store().snapshot(tags=["lifecycle_stage"])
    everyone = snap["customer_id"].astype(str).to_numpy()
    rng = np.random.default_rng(7)
    only = set(args.only or ["show", "explain", "console"])
    report: dict[str, Any] = {
        "project": json.loads((args.root / "bench-project.json").read_text()),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    if "show" in only:
        ids = [str(c) for c in rng.choice(everyone, size=args.customers_shown, replace=False)]
        report["customers_show"] = bench_show(project, ids)
    if "explain" in only:
        ids = [str(c) for c in rng.choice(everyone, size=args.explains, replace=False)]
        report["explain_in_process"] = bench_explain(project, ids)
    if "console" in only:
        ids = [str(c) for c in rng.choice(everyone, size=args.requests, replace=False)]
        report["console"] = bench_console(project, ids, args.role, args.requests)
    report["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
