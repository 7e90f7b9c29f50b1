"""A large project for the serving-side benchmarks (profiles, ``/explain``, the console).

``ensure_project(root, customers)`` builds it once and reuses it when ``root`` holds one
of that size: ``tagsmith init``; a year of synthetic facts (``synthetic.generate``,
written with the fact store's own writer, as ``benchmarks/realtime.py`` does: the import
is measured by ``benchmarks/import_facts.py``); churn and value champions the size of
the trained ones (LightGBM, 200 trees of 31 leaves on every feature, trained on a
sample's features and its next 90 days) registered in the project's MLflow registry; two
batch tagging runs by the CLI (``tags run`` on 2024-12-01 and 2025-01-01), so tags have
a history.

    PYTHONPATH=. python benchmarks/big_project.py --root /tmp/p1m --customers 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

AS_OF = "2025-01-01"
EARLIER = "2024-12-01"
TRAIN_AT = pd.Timestamp("2024-10-01", tz="UTC")
SAMPLE = 50_000


def _cli(args: list[str]) -> None:
    from click.testing import CliRunner

    from tagsmith.cli import main

    done = CliRunner().invoke(main, args)
    if done.exit_code != 0:
        raise RuntimeError(f"tagsmith {' '.join(args)} failed:\n{done.output}")


def _champions(project: Any, customers: pd.DataFrame, events: pd.DataFrame) -> None:
    import lightgbm as lgb

    from features.build import build_features
    from scoring.contract import ModelContract, categorical_levels_of, model_matrix
    from tests.scoring.registry import register_booster

    spec = project.feature_spec()
    from features.spec import spec_hash

    rng = np.random.default_rng(0)
    ids = customers["customer_id"].to_numpy()
    chosen = set(rng.choice(ids, size=min(SAMPLE, len(ids)), replace=False).tolist())
    sample_c = customers[customers["customer_id"].isin(chosen)].reset_index(drop=True)
    sample_e = events[events["customer_id"].isin(chosen)].reset_index(drop=True)
    features = build_features(sample_c, sample_e, as_of=TRAIN_AT, spec=spec)
    horizon = sample_e[
        (sample_e["occurred_at"] >= TRAIN_AT)
        & (sample_e["occurred_at"] < TRAIN_AT + pd.Timedelta(days=90))
    ]
    bought = horizon[horizon["event_type"] == "purchase"].groupby("customer_id")["amount"].sum()
    spend = features["customer_id"].map(bought).astype("float64").fillna(0.0).to_numpy()
    names = [c for c in features.columns if c not in ("customer_id", "as_of")]
    for name, target in (("churn-predictor", "churn"), ("value-predictor", "value")):
        contract = ModelContract(
            target=target,  # type: ignore[arg-type]
            horizon_days=90,
            feature_names=names,
            categorical_levels=categorical_levels_of(features, names),
            spec_hash=spec_hash(spec),
        )
        x = model_matrix(features, contract)
        y = (spend <= 0).astype(float) if target == "churn" else spend
        params: dict[str, Any] = {"objective": "binary" if target == "churn" else "regression"}
        params |= {"verbose": -1, "num_threads": 2, "num_leaves": 31, "seed": 0}
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=200)
        register_booster(
            project.mlflow_tracking_uri,
            project.mlflow_artifacts_dir,
            name,
            booster,
            contract,
            typed_pyfunc=True,  # as training logs champions: `mlflow models serve` takes text
        )


def ensure_project(root: Path, customers: int) -> Any:
    """The project at ``root`` with ``customers`` customers (built when missing)."""
    from tagsmith.project import Project

    marker = root / "bench-project.json"
    if marker.exists() and json.loads(marker.read_text())["customers"] == customers:
        return Project.load(root)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} holds something else: remove it or pick another --root")
    from synthetic import generate

    steps: dict[str, float] = {}
    t = time.perf_counter()
    _cli(["--project", str(root), "init"])
    project = Project.load(root)
    data = generate(customers, start="2024-01-01", end="2024-12-31 23:59:59", seed=3)
    store = project.fact_store()
    with store.lock():
        store.write(
            customers=data.customers,
            events=data.events,
            log_entries=[],
            now=pd.Timestamp.now(tz="UTC"),
        )
    steps["facts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _champions(project, data.customers, data.events)
    steps["champions_s"] = time.perf_counter() - t
    n_events = len(data.events)
    del data
    for as_of in (EARLIER, AS_OF):
        t = time.perf_counter()
        _cli(["--project", str(root), "tags", "run", "--role", "admin", "--as-of", as_of])
        steps[f"tags_run_{as_of}_s"] = time.perf_counter() - t
    timings = {k: round(v, 1) for k, v in steps.items()}
    marker.write_text(json.dumps({"customers": customers, "events": n_events, **timings}))
    return Project.load(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    ensure_project(args.root, args.customers)
    print((args.root / "bench-project.json").read_text())


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
