"""Time ``tagsmith facts import`` on a large events file (not a test; prints figures).

Writes a customers CSV and an events CSV (ISO timestamps, a sprinkle of bad rows),
imports them into a scratch project, then imports the events again (every row an
exact duplicate of a stored one: the idempotent worst case), and prints the wall
time, rows per second and peak memory of each step.

Reference in the same process: DuckDB doing the core of the same work on the same file
(read the CSV, parse times and amounts, check the amount >= 0 and present where
required, the event type and the customer, drop future rows, sort by customer and time,
write zstd Parquet). ``--append N`` also imports N new events into the filled store and,
for the ratio, the same N events into an empty one.

    PYTHONPATH=. python benchmarks/import_facts.py --events 2000000
    PYTHONPATH=. python benchmarks/import_facts.py --events 20000000 --customers 1000000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

from features.importer import import_facts  # noqa: E402
from tagsmith.project import Project  # noqa: E402

TYPES = np.array(["purchase", "refund", "browse", "login", "complaint"])
CATEGORIES = np.array(["books", "toys", "beauty", "health", "food", "home", "sports"])


def write_inputs(folder: Path, n_events: int, n_customers: int, seed: int) -> tuple[Path, Path]:
    """Write customers.csv and events.csv; about 0.1% of event rows are bad."""
    rng = np.random.default_rng(seed)
    ids = pa.array(np.char.add("C", np.arange(n_customers).astype(str)))
    start = np.datetime64("2023-01-01T00:00:00", "s")
    signup = start + rng.integers(0, 86400 * 30, n_customers).astype("timedelta64[s]")
    customers = pa.table(
        {
            "customer_id": ids,
            "signup_at": pa.array(np.datetime_as_string(signup) + "Z"),
            "gender": pa.array(rng.choice(["female", "male"], n_customers)),
            "birth_year": pa.array(rng.integers(1950, 2005, n_customers)),
        }
    )
    customers_path = folder / "customers.csv"
    pcsv.write_csv(customers, customers_path)

    events_path = folder / "events.csv"
    chunk = 1_000_000  # bounded memory: the import, not the input writer, sets the peak
    writer = None
    for first in range(0, n_events, chunk):
        n = min(chunk, n_events - first)
        table = _events_chunk(rng, signup, n)
        if writer is None:
            writer = pcsv.CSVWriter(
                events_path, table.schema, write_options=pcsv.WriteOptions(quoting_style="none")
            )
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return customers_path, events_path


def _events_chunk(rng: np.random.Generator, signup: np.ndarray, n: int) -> pa.Table:
    who = rng.integers(0, len(signup), n)
    when = signup[who] + rng.integers(86400 * 31, 86400 * 700, n).astype("timedelta64[s]")
    kind = TYPES[rng.choice(5, n, p=[0.25, 0.02, 0.5, 0.2, 0.03])]
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    has_amount = np.isin(kind, ["purchase", "refund"])
    amount_text = np.where(has_amount, amount.astype(str), "")
    amount_text = np.where(rng.random(n) < 0.001, "n/a?", amount_text)  # bad rows
    return pa.table(
        {
            "customer_id": pa.array(np.char.add("C", who.astype(str))),
            "occurred_at": pa.array(np.datetime_as_string(when) + "Z"),
            "event_type": pa.array(kind),
            "amount": pa.array(amount_text),
            "category": pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), n)]),
            "quantity": pa.array(np.where(has_amount, rng.integers(1, 4, n), 0)),
        }
    )


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux ``clear_refs``), so the next
    reading is the peak of what runs after; ``False`` where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_peak_gib() -> float:
    """Peak resident memory since the last reset (``VmHWM``), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def duckdb_reference(
    customers: Path, events: Path, out: Path, now: pd.Timestamp
) -> tuple[float, float, int]:
    """Wall and CPU seconds DuckDB takes for the core of the import's work on the same
    files (CPU counts every thread of this process, as for the import), and the rows it
    kept."""
    import duckdb

    t0, cpu0 = time.perf_counter(), time.process_time()
    with duckdb.connect() as con:
        con.execute(
            f"""
            COPY (
              WITH raw AS (
                SELECT customer_id, try_cast(occurred_at AS TIMESTAMPTZ) AS occurred_at,
                       event_type, try_cast(nullif(amount, '') AS DOUBLE) AS amount,
                       coalesce(amount, '') AS amount_text,
                       category, try_cast(quantity AS DOUBLE) AS quantity
                FROM read_csv('{events}', all_varchar = true, header = true)
              ),
              known AS (
                SELECT customer_id FROM read_csv('{customers}', all_varchar = true)
              )
              SELECT r.* EXCLUDE (amount_text)
              FROM raw r SEMI JOIN known k ON r.customer_id = k.customer_id
              WHERE r.occurred_at IS NOT NULL
                AND r.occurred_at <= TIMESTAMPTZ '{now.isoformat()}' + INTERVAL 24 HOUR
                AND r.event_type IN ('purchase', 'refund', 'browse', 'login', 'complaint')
                AND (r.amount IS NULL OR r.amount >= 0)
                AND (r.amount IS NOT NULL OR r.amount_text = '')
                AND (r.amount IS NOT NULL OR r.event_type NOT IN ('purchase', 'refund'))
              ORDER BY r.customer_id, r.occurred_at
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
            """
        )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return seconds, cpu, pq.ParquetFile(out).metadata.num_rows


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-reimport", action="store_true", help="skip the all-duplicates re-import"
    )
    parser.add_argument("--append", type=int, default=0, help="new events appended after")
    args = parser.parse_args()
    n_customers = args.customers or max(1000, args.events // 20)
    scratch = Path(tempfile.mkdtemp(prefix="tagsmith-import-bench-"))
    try:
        t0 = time.perf_counter()
        customers, events = write_inputs(scratch, args.events, n_customers, args.seed)
        size = events.stat().st_size / 2**20
        print(
            f"inputs: {n_customers:,} customers, {args.events:,} events "
            f"({size:,.0f} MiB CSV) written in {time.perf_counter() - t0:.1f} s; "
            f"peak RSS so far {peak_rss_gib():.2f} GiB"
        )
        project = Project.init(scratch / "project")
        store = project.fact_store()
        now = pd.Timestamp("2026-01-01T00:00:00Z")
        steps = ["first import"] + ([] if args.no_reimport else ["re-import (all duplicates)"])
        for label in steps:
            # The import's own peak, not the input generator's before it.
            own_peak = reset_peak_rss()
            t0, cpu0 = time.perf_counter(), time.process_time()
            report = import_facts(
                store,
                config=project.config.facts,
                quarantine_dir=project.quarantine_dir,
                now=now,
                customers=customers if label == "first import" else None,
                events=events,
            )
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            if label == "first import":
                first_import_s, first_import_cpu = seconds, cpu
            counts = report.files[-1]
            print(
                f"{label}: {seconds:.1f} s wall ({cpu:.1f} s CPU), "
                f"{counts.rows_read / seconds:,.0f} events/s; "
                f"accepted {counts.accepted:,}, quarantined {counts.quarantined}; "
                f"peak RSS so far {peak_rss_gib():.2f} GiB"
            )
            if own_peak:
                peak = current_peak_gib()
                print(
                    f"  {label}: peak RSS of this step {peak:.2f} GiB = "
                    f"{peak * 1024 / size:.2f}x the CSV (target 2x)"
                )
        parquet = store.events_path.stat().st_size / 2**20
        print(f"events.parquet: {parquet:,.0f} MiB ({size / parquet:.1f}x smaller than the CSV)")
        first_s = first_import_s
        duck_s, duck_cpu, kept = duckdb_reference(customers, events, scratch / "duck.parquet", now)
        # CPU seconds as well: on a shared machine wall time mostly measures the others.
        print(
            f"DuckDB reference (same file, core checks, sort, Parquet): {duck_s:.1f} s wall "
            f"({duck_cpu:.1f} s CPU), {kept:,} rows kept; import / DuckDB = "
            f"{first_s / duck_s:.2f}x wall, {first_import_cpu / duck_cpu:.2f}x CPU; "
            f"peak RSS so far {peak_rss_gib():.2f} GiB"
        )
        if args.append:
            more = scratch / "more"
            more.mkdir()
            _, new_events = write_inputs(more, args.append, n_customers, args.seed + 1)
            timed: dict[str, float] = {}
            cpu_timed: dict[str, float] = {}
            for label, target in (("append to the store", project), ("same events alone", None)):
                if target is None:
                    target = Project.init(scratch / "alone")
                    import_facts(
                        target.fact_store(),
                        config=target.config.facts,
                        quarantine_dir=target.quarantine_dir,
                        now=now,
                        customers=customers,
                    )
                t0, cpu0 = time.perf_counter(), time.process_time()
                import_facts(
                    target.fact_store(),
                    config=target.config.facts,
                    quarantine_dir=target.quarantine_dir,
                    now=now,
                    events=new_events,
                )
                timed[label] = time.perf_counter() - t0
                cpu_timed[label] = time.process_time() - cpu0
                print(
                    f"{label}: {args.append:,} events in {timed[label]:.1f} s wall "
                    f"({cpu_timed[label]:.1f} s CPU)"
                )
            ratio = timed["append to the store"] / timed["same events alone"]
            cpu_ratio = cpu_timed["append to the store"] / cpu_timed["same events alone"]
            segments = len(project.fact_store().segment_paths())
            print(
                f"append / alone = {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU; "
                f"store segments after the append: {segments}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
