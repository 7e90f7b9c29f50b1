"""Live scoring (``POST /score``'s work) in process: one customer, and batches of 100.

Usage (on a project with facts and a trained model, e.g. after ``make demo``)::

    PYTHONPATH=. python benchmarks/live_scoring.py --project .demo

For customers with about ``--events`` events each (taken from the fact store, posted
as records the way the service hands them over), it times, in this process:

* ``live``: :class:`scoring.live.LiveScorer` features + rule tags + every model's
  score, one customer per call (sequential p50/p99) and 100 customers per call;
* ``batch code``: what ``/score`` ran before the fast path (canonical frames through
  ``customers_frame``/``events_frame``, ``build_features``, ``evaluate_tags`` with
  the catalogue re-checked, the model on the frame), one customer per call;
* references: LightGBM's own ``predict`` of one prepared row, and DuckDB computing
  five RFM aggregates of the customer's posted events (one SQL query per call);
* where a one-customer call spends its CPU: the calling thread's CPU time of each
  stage (records to frames, event index, features, rule tags, models), p50 over the
  100 customers (thread CPU, so a loaded machine does not inflate it).

Each figure is the best of ``--repeats`` runs; the first run is printed too. The
garbage collector is set up as the service sets it up (frozen after loading, higher
young-generation threshold). Shared code the fast path improved (model input matrix,
memoised rule type checks) also speeds up the "batch code" row, so the ratio between
the two understates the gain over the code ``/score`` ran before. The
models are the champions when they exist, else the newest registered version of
each (a fresh demo's churn gate may refuse every challenger).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from features.build import build_features  # noqa: E402
from features.schema import customers_frame, events_frame  # noqa: E402
from scoring.champions import ChampionModel, ModelTag  # noqa: E402
from scoring.live import LiveScorer  # noqa: E402
from scoring.loading import load_model  # noqa: E402
from tags.engine import evaluate_tags  # noqa: E402
from tagsmith.project import Project  # noqa: E402

MODEL_TAGS = {"churn-predictor": "churn_risk", "value-predictor": "predicted_value"}


def load_models(project: Project) -> list[ChampionModel]:
    """The champion of each model, else its newest registered version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    os.environ["MLFLOW_TRACKING_URI"] = project.mlflow_tracking_uri
    client = MlflowClient(project.mlflow_tracking_uri, registry_uri=project.mlflow_tracking_uri)
    catalogue = project.catalogue()
    models = []
    for name, tag_id in MODEL_TAGS.items():
        try:
            version = client.get_model_version_by_alias(name, "champion").version
        except MlflowException:
            found = client.search_model_versions(f"name='{name}'")
            if not found:
                continue
            version = str(max(int(v.version) for v in found))
        loaded = load_model(f"models:/{name}/{version}")
        tag = ModelTag.from_definition(catalogue.get(tag_id))
        models.append(
            ChampionModel(
                name=name,
                version=version,
                tag=tag,
                contract=loaded.contract,
                booster=loaded.booster,
            )
        )
    return models


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a request's records: missing values as None, times as Timestamps."""
    out: list[dict[str, Any]] = []
    for row in frame.to_dict("records"):
        out.append(
            {str(k): (None if v is pd.NA or v is pd.NaT or v != v else v) for k, v in row.items()}
        )
    return out


def timed(fn: Callable[[], Any], n: int) -> np.ndarray:
    """Wall seconds of ``n`` calls of ``fn``."""
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def print_stages(
    live: LiveScorer,
    customers: list[dict[str, Any]],
    events: list[list[dict[str, Any]]],
    as_of: pd.Timestamp,
    models: list[ChampionModel],
) -> None:
    """Where one customer's call spends its CPU: the calling thread's CPU seconds of
    each stage of ``LiveScorer.score``, one customer per call, p50 over the customers
    (thread CPU, so other processes on the cores do not count)."""
    from features.cutoffs import normalize_as_of
    from features.events import PreparedEvents

    stages: dict[str, list[float]] = {
        name: [] for name in ("records to frames", "event index", "features", "rule tags", "models")
    }
    cutoff = normalize_as_of(as_of)
    for customer, mine in zip(customers, events, strict=True):
        marks = [time.thread_time()]
        frames = live.customers_frame([customer]), live.events_frame(mine)
        marks.append(time.thread_time())
        prepared = PreparedEvents(*frames)
        marks.append(time.thread_time())
        features = prepared.build_features(cutoff, spec=live.spec, release=False)
        marks.append(time.thread_time())
        if live.catalogue is not None:
            evaluate_tags(features, prepared, live.catalogue, as_of=cutoff)
        marks.append(time.thread_time())
        for m in models:
            m.label(m.predict(m.prepare(features)))
        marks.append(time.thread_time())
        for k, name in enumerate(stages):
            stages[name].append(marks[k + 1] - marks[k])
    total = sum(float(np.median(v)) for v in stages.values())
    print(f"\nOne customer's call by stage (thread CPU, p50 of {len(customers)} customers):")
    for name, values in stages.items():
        p50 = float(np.median(values)) * 1e3
        print(f"  {name:<20}{p50:>8.2f} ms  ({p50 / (total * 1e3):.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path(".demo"))
    parser.add_argument("--events", type=int, default=100, help="events per scored customer")
    parser.add_argument("--requests", type=int, default=300, help="one-customer calls per run")
    parser.add_argument("--batches", type=int, default=20, help="100-customer calls per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    project = Project.load(args.project)
    facts = project.fact_store()
    customers, events = facts.load_customers(), facts.load_events()
    counts = events["customer_id"].value_counts()
    near = (counts - args.events).abs().sort_values(kind="stable")
    chosen = [str(i) for i in near.index[:100]]
    as_of = (events["occurred_at"].max() + pd.Timedelta(days=1)).floor("D")
    spec, catalogue, config = project.feature_spec(), project.catalogue(), project.config.facts
    models = load_models(project)
    by_id = {
        str(r["customer_id"]): r for r in records(customers[customers["customer_id"].isin(chosen)])
    }
    mine = events[events["customer_id"].isin(chosen)]
    ev_by_id: dict[str, list[dict[str, Any]]] = {c: [] for c in chosen}
    for r in records(mine):
        ev_by_id[str(r["customer_id"])].append(r)
    one = chosen[0]
    live = LiveScorer(spec=spec, catalogue=catalogue, facts=config)
    batch_customers = [by_id[c] for c in chosen]
    batch_events = [e for c in chosen for e in ev_by_id[c]]

    def live_one() -> Any:
        return live.score([by_id[one]], ev_by_id[one], as_of=as_of, models=models)

    def live_batch() -> Any:
        return live.score(batch_customers, batch_events, as_of=as_of, models=models)

    def old_one() -> Any:
        cf = customers_frame([by_id[one]], config)
        ef = events_frame(pd.DataFrame(ev_by_id[one]))
        features = build_features(cf, ef, as_of=as_of, spec=spec)
        evaluate_tags(features, ef, catalogue, as_of=as_of)
        for m in models:
            m.predict(m.prepare(features))

    features = live_one().features
    matrix = models[0].prepare(features) if models else None

    def lgbm_row() -> Any:
        assert matrix is not None
        return models[0].booster.predict(matrix, num_threads=1)

    import duckdb

    con = duckdb.connect()
    posted = pd.DataFrame(ev_by_id[one])

    def duckdb_one() -> Any:
        con.register("posted", posted)
        return con.execute(
            "SELECT count(*) FILTER (event_type = 'purchase'), "
            "sum(amount) FILTER (event_type = 'purchase'), max(amount), "
            "count(DISTINCT order_id), epoch_us(max(occurred_at)) FROM posted "
            "WHERE epoch_us(occurred_at) < ?",
            [as_of.value // 1000],
        ).fetchall()

    # As the service does once started (serving.service): long-lived objects out of the
    # collector's generations and a higher young-generation threshold.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    print(
        f"{len(customers):,} customers in the store; scored customers have "
        f"{len(ev_by_id[one])} events (one) and {len(batch_events) / 100:.0f} on average "
        f"(batch of 100); {len(features.columns) - 1} features, "
        f"{len(catalogue.active(sources=('fact', 'rule')))} rule tags, "
        f"models: {', '.join(f'{m.name}/{m.version}' for m in models) or 'none'}"
    )
    print(f"{'path':<44}{'first p50':>10}{'best p50':>10}{'best p99':>10}  (ms per call)")
    rows: dict[str, tuple[float, float, float]] = {}
    for name, fn, n in [
        ("live, 1 customer", live_one, args.requests),
        ("batch code (before the fast path), 1 customer", old_one, max(args.requests // 5, 20)),
        ("reference: LightGBM predict of 1 row", lgbm_row, args.requests),
        ("reference: DuckDB RFM query of 1 customer", duckdb_one, args.requests),
        ("live, 100 customers per call", live_batch, args.batches),
    ]:
        if name.startswith("reference: LightGBM") and matrix is None:
            continue
        fn()  # warm-up
        runs = [timed(fn, n) * 1e3 for _ in range(args.repeats)]
        p50s = [float(np.percentile(r, 50)) for r in runs]
        p99s = [float(np.percentile(r, 99)) for r in runs]
        rows[name] = (p50s[0], min(p50s), min(p99s))
        print(f"{name:<44}{p50s[0]:>10.2f}{min(p50s):>10.2f}{min(p99s):>10.2f}", flush=True)
    print_stages(live, [by_id[c] for c in chosen], [ev_by_id[c] for c in chosen], as_of, models)
    live1, old1 = rows["live, 1 customer"], rows["batch code (before the fast path), 1 customer"]
    batch = rows["live, 100 customers per call"]
    print("\nTargets:")
    print(f"  /score work, 1 customer, p99: {live1[2]:.2f} ms (target <= 5 ms)")
    print(f"  batches of 100: {100_000 / batch[1]:,.0f} customers/s (target >= 5,000)")
    print(f"  live vs the batch code, 1 customer (p50): {old1[1] / live1[1]:.1f}x faster")
    duck = rows["reference: DuckDB RFM query of 1 customer"]
    print(f"  live / DuckDB's one-query RFM of the same events (p50): {live1[1] / duck[1]:.1f}x")
    print(f"  machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
