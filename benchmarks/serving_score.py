"""``POST /score`` rows of ``benchmarks/serving.py``: stored customers posted as facts,
over HTTP and, for the same customers, ``LiveScorer.score`` in process."""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.live_scoring import load_models, run_thresholds
from benchmarks.serving_http import Result, print_row, run_scenario
from scoring.live import LiveScorer
from scoring.live_records import frame_records
from tagsmith.project import Project


@dataclass
class Posted:
    """Customers posted to ``/score``: request bodies and the same facts as records.

    Attributes:
        ids: The customers, in the order their bodies are sent.
        bodies: One ``POST /score`` JSON body per customer.
        customers: Each customer's record as the service hands it to the live scorer.
        events: Each customer's event records, likewise.
        as_of: The posted ``as_of`` (the day after the store's newest event).
    """

    ids: list[str]
    bodies: list[bytes]
    customers: list[dict[str, Any]]
    events: list[list[dict[str, Any]]]
    as_of: pd.Timestamp

    @property
    def mean_events(self) -> float:
        """Events per posted customer, on average."""
        return sum(len(e) for e in self.events) / max(len(self.events), 1)


def _json_value(value: Any) -> Any:
    """A fact value as JSON carries it (times as ISO 8601 text, numpy scalars as Python)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def posted_customers(project: Project, n_events: int, n: int = 100) -> Posted:
    """The ``n`` stored customers whose event count is nearest ``n_events``, as posted
    facts (each read with Parquet filters: no full load of the events beyond two columns).
    """
    facts = project.fact_store()
    stored = facts.load_events(columns=["customer_id", "occurred_at"])
    counts = stored["customer_id"].value_counts()
    near = (counts - n_events).abs().sort_values(kind="stable")
    ids = [str(i) for i in near.index[:n]]
    as_of = (stored["occurred_at"].max() + pd.Timedelta(days=1)).floor("D")
    del stored, counts
    bodies, customers, events = [], [], []
    for cid in ids:
        frame, mine = facts.load_customer(cid)
        record = frame_records(frame)[0]
        records = frame_records(mine)
        attributes = {
            k: _json_value(v)
            for k, v in record.items()
            if k not in ("customer_id", "signup_at") and v is not None
        }
        body = {
            "customer": {
                "customer_id": cid,
                "signup_at": record["signup_at"].isoformat(),
                "attributes": attributes,
            },
            "events": [
                {k: _json_value(v) for k, v in e.items() if k != "customer_id" and v is not None}
                for e in records
            ],
            "as_of": as_of.isoformat(),
        }
        bodies.append(json.dumps(body).encode())
        customers.append(record)
        events.append(records)
    return Posted(ids=ids, bodies=bodies, customers=customers, events=events, as_of=as_of)


def bench_in_process(project: Project, posted: Posted, n: int) -> Result:
    """``LiveScorer.score`` of the posted customers in turn, ``n`` calls, as the service
    runs it: the latest run's thresholds pinned, the champions (no other version), the
    collector set up as in the service. Server CPU: the calling thread's CPU per call.
    """
    live = LiveScorer(
        spec=project.feature_spec(), catalogue=project.catalogue(), facts=project.config.facts
    )
    models = load_models(project, champions_only=True)
    pinned = run_thresholds(project)

    def call(i: int) -> Any:
        k = i % len(posted.ids)
        return live.score(
            [posted.customers[k]],
            posted.events[k],
            as_of=posted.as_of,
            models=models,
            thresholds=pinned,
        )

    for i in range(min(50, n)):  # warm-up, as the service's start and first requests
        call(i)
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    wall, cpu = np.empty(n), np.empty(n)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            start, start_cpu = time.perf_counter(), time.thread_time()
            call(i)
            cpu[i] = time.thread_time() - start_cpu
            wall[i] = time.perf_counter() - start
        seconds = time.perf_counter() - t0
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    ms = wall * 1000
    return Result(
        server="in process LiveScorer",
        scenario="/score work, 1 customer, seq",
        requests=n,
        rows_per_request=1,
        concurrency=1,
        seconds=seconds,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        errors=0,
        client_cpu_share=float(cpu.sum() / seconds),
        server_cpu_ms=float(cpu.mean() * 1000),
    )


def bench_score(
    base: str,
    posted: Posted,
    predicted: list[str],
    args: argparse.Namespace,
    headers: dict[str, str],
    server_pid: int,
) -> Result:
    """``POST /score`` of the posted customers in turn, sequential (``--requests``)."""

    def scored(status: int, payload: bytes) -> bool:
        # Every served champion's tag comes back, with the features its role may see.
        if status != 200:
            return False
        answer = json.loads(payload)
        got = {t["tag_id"] for t in answer["tags"]}
        return set(predicted) <= got and bool(answer["features"])

    result = None
    for scenario, n in (("warm-up", 50), ("1 customer, sequential", args.requests)):
        bodies = [posted.bodies[i % len(posted.bodies)] for i in range(n)]
        result = run_scenario(
            "tagsmith /score",
            scenario,
            f"{base}/score",
            bodies,
            rows=1,
            concurrency=1,
            headers=headers,
            check=scored,
            server_pid=server_pid,
        )
    assert result is not None
    print_row(result)
    if result.errors:
        raise SystemExit(
            f"/score answered {result.errors} of {result.requests} requests without 200 "
            f"and every served champion's tag {sorted(predicted)}; see the server log."
        )
    return result
