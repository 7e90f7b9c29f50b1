"""Time the two sorts of events by customer and time (not a test; prints figures).

1. For a fact-store file: ``features.store_files.sorted_events`` against Arrow's
   two-key ``Table.sort_by`` (the reference it replaced) on the same table, in the
   import generator's random order and in time order (a log).
2. For feature building: ``features.events.prepare_events`` on the same synthetic
   events in time order (a log) against the fact store's order (nothing to sort); the
   issue asks for "any order at the same speed".

Everything runs in one process, alternating the two sides, best of ``--repeats``; CPU
seconds count every thread of the process (wall times on a shared machine mostly
measure the others).

    PYTHONPATH=. python benchmarks/sorting.py --events 2000000 --customers 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import tagsmith  # noqa: E402, F401  (numpy's huge-page setting, as the CLI runs)
from features.events import prepare_events  # noqa: E402
from features.store_files import sorted_events  # noqa: E402

KEYS = [("customer_id", "ascending"), ("occurred_at", "ascending")]


def best_of(repeats: int, sides: dict[str, Callable[[], Any]]) -> dict[str, tuple[float, float]]:
    """(CPU s, wall s) of each side, best of ``repeats``, the sides alternating."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, fn in sides.items():
            t0, cpu0 = time.perf_counter(), time.process_time()
            fn()
            took = (time.process_time() - cpu0, time.perf_counter() - t0)
            best[name] = min(best.get(name, took), took)
    return best


def store_table(n: int, n_customers: int, seed: int) -> pa.Table:
    """Canonical events as the importer hands them to the store, in random order."""
    rng = np.random.default_rng(seed)
    who = rng.integers(0, n_customers, n)
    when = np.datetime64("2023-01-01T00:00:00", "us") + (
        rng.integers(0, 86400 * 700, n) * 1_000_000
    ).astype("timedelta64[us]")
    text = pa.large_string()
    return pa.table(
        {
            "customer_id": pa.array(np.char.add("C", who.astype(str))).cast(text),
            "occurred_at": pa.array(when).cast(pa.timestamp("us", tz="UTC")),
            "event_type": pa.array(rng.choice(["purchase", "browse", "login"], n)).cast(text),
            "amount": pa.array(np.round(rng.gamma(2.0, 30.0, n), 2)),
            "category": pa.array(rng.choice(["books", "toys", "food"], n)).cast(text),
            "product_id": pa.nulls(n, text),
            "order_id": pa.nulls(n, text),
            "quantity": pa.array(rng.integers(1, 4, n).astype(np.float64)),
        }
    )


def file_sort(n: int, n_customers: int, seed: int, repeats: int) -> None:
    """Part 1: sorted_events against Table.sort_by."""
    table = store_table(n, n_customers, seed)
    for label, events in (("random order", table), ("time order", table.sort_by("occurred_at"))):
        assert sorted_events(events).equals(events.sort_by(KEYS))
        best = best_of(
            repeats,
            {"sort_by": partial(events.sort_by, KEYS), "new": partial(sorted_events, events)},
        )
        (ref_cpu, ref_wall), (cpu, wall) = best["sort_by"], best["new"]
        print(
            f"file sort, {n:,} events / {n_customers:,} customers, {label}: Table.sort_by "
            f"{ref_cpu:.2f} s CPU ({ref_wall:.2f} s wall), sorted_events {cpu:.2f} s CPU "
            f"({wall:.2f} s wall) = {cpu / ref_cpu:.2f}x CPU, {wall / ref_wall:.2f}x wall"
        )


def prepare(n_customers: int, seed: int, repeats: int) -> None:
    """Part 2: prepare_events in time order against the fact store's order."""
    from features.events import FEATURE_EVENT_COLUMNS
    from synthetic import generate

    data = generate(n_customers, seed=seed)
    customers = data.customers
    events = data.events[list(FEATURE_EVENT_COLUMNS)]
    by_time = events.sort_values("occurred_at", kind="stable", ignore_index=True)
    by_customer = events.sort_values(
        ["customer_id", "occurred_at"], kind="stable", ignore_index=True
    )
    del data, events
    best = best_of(
        repeats,
        {
            "store": lambda: prepare_events(customers, by_customer),
            "time": lambda: prepare_events(customers, by_time),
        },
    )
    (ref_cpu, ref_wall), (cpu, wall) = best["store"], best["time"]
    print(
        f"prepare_events, {n_customers:,} customers, {len(by_time):,} events: store order "
        f"{ref_cpu:.2f} s CPU ({ref_wall:.2f} s wall), time order {cpu:.2f} s CPU "
        f"({wall:.2f} s wall) = {cpu / ref_cpu:.2f}x CPU, {wall / ref_wall:.2f}x wall"
    )


def main() -> None:
    """Run both parts and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="part 1 table size")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    file_sort(args.events, args.customers, args.seed, args.repeats)
    prepare(args.customers, args.seed, args.repeats)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
