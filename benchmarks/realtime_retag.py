"""Benchmark of the live re-tag's per-event CPU: the array path against the frame path.

On a project (``--root``: a copy of the ``benchmarks/big_project.py`` project, whose
champions make every re-tag predict too), in one process, for micro-batches of
``--batch`` random customers, alternating ``--repeats`` times:

1. **re-tag, reference**: the frame path the tagger ran before (``build_features`` on
   the customers' rows and events, ``evaluate_tags`` with the batch thresholds, each
   champion's ``predict_tags`` on the frame, ``concat_tag_tables``, the merge of
   :func:`tags.live.live_grid`);
2. **re-tag, arrays**: ``LiveTagger._evaluate`` (``streaming.retag``), checked equal to 1
   (values and versions exactly, scores to 1e-9);
3. **transitions, reference**: the per-(customer, tag) loop over dicts it replaced;
4. **transitions, arrays**: ``tags.live``'s placement, ``LiveState.overlay`` and one compare;
5. **apply**: ``LiveTagger.apply`` of that many new login events end to end (validation,
   durable segment, re-tag, write), CPU per batch.

CPU time (``time.process_time``) is reported beside wall time: the machine is shared.
The report names the commit and the load average at start and end.

Usage::

    cp -a /work/bench/p1m /tmp/p1m-copy   # apply adds live events: use a copy
    PYTHONPATH=. /work/tools/big.sh python benchmarks/realtime_retag.py --root /tmp/p1m-copy
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _frame_grid(tagger: Any, ids: list[str], as_of: pd.Timestamp, now: pd.Timestamp) -> Any:
    """The frame path the array re-tag replaced (the tests' oracle), as the live grid."""
    from tests.streaming.frame_retag import frame_grid

    return frame_grid(tagger, tagger.predictors, ids, tagger.tags, as_of=as_of, now=now)


def _loop_changes(
    customers: Sequence[str],
    tags: Sequence[str],
    new: Sequence[str | None],
    snapshot: Any,
    live_of: Callable[[str], dict[str, str | None] | None],
) -> int:
    """The transitions loop before it was vectorised (dicts per customer): changes."""
    table = snapshot.rows_of(customers) if snapshot is not None else None
    snap: dict[str, dict[str, str | None]] = {}
    if table is not None:
        for cid, tag, value in zip(
            table["customer_id"].to_pylist(),
            table["tag_id"].to_pylist(),
            table["value"].to_pylist(),
            strict=True,
        ):
            snap.setdefault(str(cid), {})[str(tag)] = value
    n, width = 0, len(tags)
    for i, cid in enumerate(customers):
        live = live_of(cid) or {}
        mine = snap.get(cid, {})
        for j, tag in enumerate(tags):
            old = live[tag] if tag in live else mine.get(tag)
            n += old != new[i * width + j]
    return n


def _array_changes(tagger: Any, grid: Any) -> int:
    """What ``write_live`` now does: the snapshot placed by its codes, the live state
    overlaid, one compare (changes)."""
    from tags.live import _changes

    current = np.full(len(grid.value), None, dtype=object)
    snapshot = tagger._snapshot
    if snapshot is not None:
        snapshot.place(grid.customers, grid.tags, current)
    tagger._live_state.overlay(grid.customers, grid.tags, current)
    return int(_changes(grid.customers, grid.tags, grid.value, current).num_rows)


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _one_size(tagger: Any, ids: np.ndarray, batch: int, repeats: int) -> dict[str, Any]:
    from streaming.tagger import live_as_of

    rng = np.random.default_rng(batch)
    cpu: dict[str, list[float]] = {k: [] for k in ("ref", "arrays", "t_ref", "t_arrays", "apply")}
    wall: dict[str, list[float]] = {k: [] for k in cpu}
    for r in range(repeats):
        chosen = [str(c) for c in dict.fromkeys(rng.choice(ids, size=batch))]
        now = pd.Timestamp.now(tz="UTC")
        as_of = live_as_of(now)
        # Alternate which path runs first: caches warmed by one do not favour the other.
        order = ("ref", "arrays") if r % 2 == 0 else ("arrays", "ref")
        grids: dict[str, Any] = {}
        for name in order:
            if name == "ref":
                grids[name], c, w = _timed(_frame_grid, tagger, chosen, as_of, now)
            else:
                grids[name], c, w = _timed(tagger._evaluate, chosen, as_of, at=now)
            cpu[name].append(c)
            wall[name].append(w)
        ref, arr = grids["ref"], grids["arrays"]
        assert list(ref.value) == list(arr.value), "array re-tag differs from the frame path"
        assert list(ref.version) == list(arr.version)
        np.testing.assert_allclose(arr.score, ref.score, rtol=1e-9, atol=0.0, equal_nan=True)
        state = tagger._live_state
        n_ref, c, w = _timed(
            _loop_changes,
            arr.customers,
            arr.tags,
            list(arr.value),
            tagger._snapshot,
            state.values_of,
        )
        cpu["t_ref"].append(c)
        wall["t_ref"].append(w)
        n_arr, c, w = _timed(_array_changes, tagger, arr)
        cpu["t_arrays"].append(c)
        wall["t_arrays"].append(w)
        assert n_ref == n_arr, "vectorised transitions differ from the loop"
        stamp = now.isoformat()
        records = [
            {
                "event_id": f"rb{time.time_ns()}-{r}-{j}",
                "customer_id": cid,
                "occurred_at": stamp,
                "event_type": "login",
            }
            for j, cid in enumerate(rng.choice(ids, size=batch))
        ]
        _, c, w = _timed(tagger.apply, records, source="bench")
        cpu["apply"].append(c)
        wall["apply"].append(w)

    def ms(values: list[float]) -> float:
        return round(1000 * float(np.median(values)), 1)

    out: dict[str, Any] = {"batch": batch, "repeats": repeats}
    for key in cpu:
        out[f"{key}_cpu_ms_p50"] = ms(cpu[key])
        out[f"{key}_wall_ms_p50"] = ms(wall[key])
    out["retag_cpu_ratio_ref_over_arrays"] = round(
        float(np.median(cpu["ref"])) / max(float(np.median(cpu["arrays"])), 1e-9), 2
    )
    out["transitions_cpu_ratio_ref_over_arrays"] = round(
        float(np.median(cpu["t_ref"])) / max(float(np.median(cpu["t_arrays"])), 1e-9), 2
    )
    out["apply_events_per_cpu_s"] = round(batch / max(float(np.median(cpu["apply"])), 1e-9), 1)
    return out


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="a copy of a big_project")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 50, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    load_start = os.getloadavg()
    from tagsmith.live import live_tagger
    from tagsmith.project import Project

    project = Project.load(args.root)
    tagger, _ = live_tagger(project)
    t = time.perf_counter()
    tagger.warm()
    warm_s = time.perf_counter() - t
    ids = project.fact_store().load_customers()["customer_id"].astype(str).to_numpy()
    sizes = [_one_size(tagger, ids, b, args.repeats) for b in args.batch]
    report = {
        "commit": _commit(),
        "customers": len(ids),
        "champions": [str(p.version) for p in tagger.predictors],
        "tags": len(tagger.tags),
        "tagger_warm_s": round(warm_s, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "sizes": sizes,
    }
    print(json.dumps(report, indent=1))
    tagger.close()


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
