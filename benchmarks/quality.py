"""Quality and speed of the churn and value predictors on synthetic data.

Quality (default 100k customers): the model against every baseline and the oracle
(scores from the generator's latent truth) on the test cutoff. Criteria:

- churn AUC within 0.02 of the oracle's and above every baseline's;
- churn Brier no worse than the best baseline's;
- value normalised Gini within 0.05 of the oracle's and above every baseline's.

Speed (default 1M customers x 6 cutoffs): wall time and peak memory (RSS) of
``train_predictor`` (labels, features, model, baselines, evaluation) for churn;
criteria <= 5 minutes and <= 12 GiB.

    PYTHONPATH=. python benchmarks/quality.py --phase quality --customers 100000
    PYTHONPATH=. python benchmarks/quality.py --phase speed --customers 1000000

Prints figures and PASS/FAIL per criterion; exits 1 if any criterion fails.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

# benchmarks/features.py would shadow the features package when run as a script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import pandas as pd  # noqa: E402
import psutil  # noqa: E402

from features.build import build_features  # noqa: E402
from features.spec import default_spec, spec_hash  # noqa: E402
from features.synthetic import generate, oracle_churn_probability, oracle_expected_value  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.pipeline import TrainingResult, train_predictor  # noqa: E402


class PeakRSS:
    """Samples this process's resident memory every 50 ms; keeps the maximum."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _train(data, target: str, config: TrainingConfig, *, oracle: bool) -> TrainingResult:  # type: ignore[no-untyped-def]
    fn = oracle_churn_probability if target == "churn" else oracle_expected_value
    spec = default_spec()
    return train_predictor(
        data.customers,
        data.events,
        target=target,
        config=config,  # type: ignore[arg-type]
        feature_builder=build_features,
        spec=spec,
        spec_hash=spec_hash(spec),
        oracle=(lambda c: fn(data.truth, cutoff=c, horizon_days=config.horizon_days))
        if oracle
        else None,
        progress=lambda m: print(f"  [{time.strftime('%H:%M:%S')}] {m}", flush=True),
    )


def _check(name: str, ok: bool, detail: str, failures: list[str]) -> None:
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if not ok:
        failures.append(name)


def quality(args: argparse.Namespace, config: TrainingConfig) -> list[str]:
    t0 = time.perf_counter()
    data = generate(args.customers, start=args.start, end=args.end, seed=args.seed)
    print(
        f"generated {len(data.customers):,} customers, {len(data.events):,} events "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    failures: list[str] = []
    pd.set_option("display.width", 200)
    for target in ("churn", "value"):
        t0 = time.perf_counter()
        r = _train(data, target, config, oracle=True)
        print(
            f"\n{target}: {r.rows} rows, {len(r.contract.feature_names)} features, "
            f"{time.perf_counter() - t0:.0f} s, stages {r.seconds}"
        )
        print(r.metrics_table().round(4).to_string())
        m = r.metrics
        baselines = r.baselines
        if target == "churn":
            gap = m["oracle"]["auc"] - m["model"]["auc"]
            _check(
                "churn AUC within 0.02 of oracle",
                gap <= 0.02,
                f"model {m['model']['auc']:.4f}, oracle {m['oracle']['auc']:.4f}, gap {gap:.4f}",
                failures,
            )
            best = max(baselines, key=lambda b: m[b]["auc"])
            _check(
                "churn AUC above every baseline",
                m["model"]["auc"] > m[best]["auc"],
                f"best baseline {best} {m[best]['auc']:.4f}",
                failures,
            )
            best = min(baselines, key=lambda b: m[b]["brier"])
            _check(
                "churn Brier no worse than best baseline",
                m["model"]["brier"] <= m[best]["brier"],
                f"model {m['model']['brier']:.4f}, {best} {m[best]['brier']:.4f}",
                failures,
            )
        else:
            gap = m["oracle"]["normalized_gini"] - m["model"]["normalized_gini"]
            _check(
                "value Gini within 0.05 of oracle",
                gap <= 0.05,
                f"model {m['model']['normalized_gini']:.4f}, oracle "
                f"{m['oracle']['normalized_gini']:.4f}, gap {gap:.4f}",
                failures,
            )
            best = max(baselines, key=lambda b: m[b]["normalized_gini"])
            _check(
                "value Gini above every baseline",
                m["model"]["normalized_gini"] > m[best]["normalized_gini"],
                f"best baseline {best} {m[best]['normalized_gini']:.4f}",
                failures,
            )
    return failures


def speed(args: argparse.Namespace, config: TrainingConfig) -> list[str]:
    t0 = time.perf_counter()
    data = generate(args.customers, start=args.start, end=args.end, seed=args.seed)
    print(
        f"generated {len(data.customers):,} customers, {len(data.events):,} events "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    data = type(data)(
        customers=data.customers, events=data.events, truth=data.truth.iloc[:0], config=data.config
    )
    rss_before = psutil.Process().memory_info().rss
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        r = _train(data, "churn", config, oracle=False)
        wall = time.perf_counter() - t0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = max(mem.peak, maxrss)
    print(
        f"\nchurn on {r.rows} rows ({len(r.plan.all)} cutoffs), "
        f"{len(r.contract.feature_names)} features: {wall:.0f} s, stages {r.seconds}"
    )
    print(
        f"memory: {rss_before / 2**30:.2f} GiB before training (facts in memory), "
        f"peak {peak / 2**30:.2f} GiB"
    )
    print(f"model AUC {r.metrics['model']['auc']:.4f}")
    failures: list[str] = []
    _check("training <= 5 min", wall <= 300, f"{wall:.0f} s", failures)
    _check("peak memory <= 12 GiB", peak <= 12 * 2**30, f"{peak / 2**30:.2f} GiB", failures)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=["quality", "speed"], default="quality")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--cutoffs", type=int, default=6)
    args = parser.parse_args()
    if args.customers is None:
        args.customers = 100_000 if args.phase == "quality" else 1_000_000
    config = TrainingConfig(n_cutoffs=args.cutoffs)
    print(
        f"{args.phase}: {args.customers:,} customers, seed {args.seed}, {args.start}.."
        f"{args.end}, {args.cutoffs} cutoffs, config {config.model_dump()}"
    )
    failures = quality(args, config) if args.phase == "quality" else speed(args, config)
    print("\nALL PASS" if not failures else f"\nFAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
