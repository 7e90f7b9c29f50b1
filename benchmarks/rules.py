"""Benchmark of rule tags: the standard library plus 30 generated rules over 1M customers.

Steps: synthetic facts (``synthetic.generate``), point-in-time features
(``features.events.prepare_events`` then ``PreparedEvents.build_features``: feature
building, timed but outside the budget), then ``evaluate_tags`` for every active
rule/fact tag given those ``PreparedEvents`` (budget: 2 s): rule evaluation, event
windows read from the prepared arrays, and the whole long output table. Reported: the
first (cold) run and the best of ``--repeat``. For comparison, one run with the raw events
frame (customer ids hashed onto the frame) is timed too, and its tags checked equal.
In the same run, three rules are also computed by hand-written numpy and the engine's
time for each is reported as a ratio to it (results are checked to be identical).

Usage::

    PYTHONPATH=. python benchmarks/rules.py [--customers 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

# As the tagsmith CLI runs (tagsmith/__init__.py): no transparent-huge-page madvise from
# numpy. Pass NUMPY_MADVISE_HUGEPAGE=1 to measure with numpy's default.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np
import pandas as pd

# Running this file puts benchmarks/ first on sys.path, where benchmarks/features.py
# would shadow the features package: drop that entry.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

BUDGET_SECONDS = 2.0
EVENT_TYPES = ["purchase", "refund", "browse", "login", "complaint"]


def generated_rules(features: pd.DataFrame) -> list[dict[str, Any]]:
    """30 rule tags of the kinds business users write (thresholds, lists, windows, tiers)."""
    categories = [str(c) for c in features["top_category"].dropna().unique()[:3]]
    cats = ", ".join(f'"{c}"' for c in categories) or '"none"'
    conditions = [
        "monetary_total > 200 and frequency_orders >= 2",
        "recency_days <= 30 and monetary_mean >= 50",
        "frequency_orders >= 5 or monetary_total >= 1000",
        "lateness > 2 and frequency_orders >= 3",
        "refund_rate > 0.2",
        "complaint_count >= 1 and days_since_last_complaint <= 60",
        "tenure_days < 90 and never_purchased",
        "browse_to_purchase > 0.5",
        "loyalty_score >= 0.5 and recency_days < 60",
        "category_entropy > 1 and distinct_categories >= 3",
        f"top_category in ({cats})",
        'region in ("north", "east") and monetary_total > 100',
        'channel = "app" and recency_days <= 14',
        'age_band in ("18-25", "26-35") and frequency_orders >= 2',
        'gender = "female" and top_category_share >= 0.6',
        "age between 26 and 35",
        "monetary_total between 100 and 500",
        "recency_days not between 30 and 90",
        "gap_mean_days between 7 and 30 and lateness < 1",
        "tenure_days between 365 and 730",
        "count(purchase, last 30 days) >= 2",
        "sum(purchase, from 90 to 30 days ago) > 100 and count(purchase, last 30 days) = 0",
        "count(login, last 7 days) = 0 and count(login, from 37 to 7 days ago) >= 3",
        "days_since(browse, last 90 days) > 60 and not never_purchased",
        "count(refund, last 90 days) >= 1 and count(complaint, last 90 days) >= 1",
    ]
    tags: list[dict[str, Any]] = []
    for i, condition in enumerate(conditions):
        tags.append(_tag(f"gen_flag_{i:02d}", "boolean", rule=condition))
    tiers = ["monetary_total", "frequency_orders", "recency_days", "loyalty_score", "tenure_days"]
    for i, column in enumerate(tiers):
        tags.append(
            _tag(
                f"gen_tier_{i:02d}",
                "ordinal",
                values=["top", "middle", "bottom"],
                rule={
                    "scope": f"{column} is not null",
                    "cases": [
                        {"value": "top", "when": f"{column} >= quantile({column}, 0.9)"},
                        {"value": "middle", "when": f"{column} >= median({column})"},
                    ],
                    "else": "bottom",
                },
            )
        )
    return tags


def _tag(tag_id: str, value_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": tag_id,
        "display_name": f"behaviour_{tag_id}",
        "category": "behaviour",
        "description": "Generated for the benchmark.",
        "owner": "bench",
        "source": "rule",
        "value_type": value_type,
        "status": "active",
        **fields,
    }


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - began)
    return best, result


def hand_old_customer(features: pd.DataFrame) -> np.ndarray:
    return np.flatnonzero(features["frequency_orders"].to_numpy(dtype="float64") >= 3)


def hand_rfm(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    buyer = ~features["never_purchased"].to_numpy(dtype=bool)
    r = features["recency_days"].to_numpy(dtype="float64")
    f = features["frequency_orders"].to_numpy(dtype="float64")
    m = features["monetary_total"].to_numpy(dtype="float64")
    r_high = r <= np.nanmedian(r[buyer])
    f_high = f > np.median(f[buyer])
    m_high = m > np.median(m[buyer])
    # Segment order of the catalogue: important_* (M high) then general_*; within, by R/F.
    code = np.where(m_high, 0, 4) + np.select(
        [r_high & f_high, r_high & ~f_high, ~r_high & f_high], [0, 1, 2], 3
    )
    rows = np.flatnonzero(buyer)
    return rows, code[rows]


def hand_browse_churn(
    features: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp
) -> np.ndarray:
    ts = events["occurred_at"].dt.tz_convert(None).to_numpy("datetime64[ns]").view(np.int64)
    now = as_of.tz_convert(None).to_datetime64().astype("datetime64[ns]").view(np.int64)
    day = 86_400 * 10**9
    keep = (events["event_type"] == "browse").to_numpy(dtype=bool, na_value=False)
    keep &= (ts >= now - 54 * day) & (ts < now)
    pos = pd.Index(features["customer_id"]).get_indexer(events["customer_id"][keep])
    t = ts[keep][pos >= 0]
    pos = pos[pos >= 0]
    n = len(features)
    early = np.bincount(pos[t < now - 30 * day], minlength=n)
    late = np.bincount(pos[t >= now - 30 * day], minlength=n)
    return np.flatnonzero((early > 4) & (late == 0))


def hand_browse_churn_prepared(
    features: pd.DataFrame, prepared: Any, as_of: pd.Timestamp
) -> np.ndarray:
    """The same rule from the prepared arrays (what the engine reads): no hashing."""
    browse = prepared.typed("browse")
    now = as_of.value // 1000
    day = 86_400 * 10**6
    code = np.repeat(np.arange(prepared.n_customers), np.diff(browse.starts))
    t = browse.t_us
    early = np.bincount(
        code[(t >= now - 54 * day) & (t < now - 30 * day)], minlength=prepared.n_customers
    )
    late = np.bincount(code[(t >= now - 30 * day) & (t < now)], minlength=prepared.n_customers)
    # Frame rows are the customers who signed up before as_of, in code order.
    on_frame = np.flatnonzero(prepared.signup_us < now)
    assert len(on_frame) == len(features)
    return np.flatnonzero((early[on_frame] > 4) & (late[on_frame] == 0))


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal long tables, compared on codes and categories (no per-row strings)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for name in a.columns:
        x, y = a[name], b[name]
        if isinstance(x.dtype, pd.CategoricalDtype) and isinstance(y.dtype, pd.CategoricalDtype):
            if not x.cat.categories.equals(y.cat.categories):
                return False
            if not np.array_equal(x.cat.codes.to_numpy(), y.cat.codes.to_numpy()):
                return False
        elif not x.equals(y):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default="2023-06-01")
    parser.add_argument("--end", default="2024-06-01")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from features.events import prepare_events
    from synthetic import generate
    from tags.catalogue import LIBRARY_DIR, Catalogue
    from tags.definitions import TagDefinition
    from tags.engine import evaluate_tag_values, evaluate_tags, long_table

    as_of = pd.Timestamp(args.end, tz="UTC")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.customers:,} "
        f"customers, {args.start} .. {args.end}"
    )
    began = time.perf_counter()
    data = generate(args.customers, start=args.start, end=args.end, seed=args.seed)
    print(f"generate:        {time.perf_counter() - began:7.2f} s  ({len(data.events):,} events)")
    began = time.perf_counter()
    prepared = prepare_events(data.customers, data.events)
    features = prepared.build_features(as_of)
    print(
        f"build_features:  {time.perf_counter() - began:7.2f} s  ({len(features):,} rows, "
        f"{features.shape[1]} columns; prepare_events + build_features, not in the budget)"
    )
    events = data.events
    library = Catalogue.load(LIBRARY_DIR, event_types=EVENT_TYPES)
    extra = [TagDefinition.model_validate(t) for t in generated_rules(features)]
    catalogue = Catalogue.from_definitions([*library, *extra], event_types=EVENT_TYPES)
    rule_tags = catalogue.active(sources=("fact", "rule"))
    print(
        f"catalogue:       {len(rule_tags)} rule/fact tags "
        f"({len(rule_tags) - len(extra)} standard + {len(extra)} generated)"
    )

    def split_run() -> tuple[float, float, pd.DataFrame]:
        began = time.perf_counter()
        results = evaluate_tag_values(features, prepared, catalogue, as_of=as_of)
        middle = time.perf_counter()
        table = long_table(features, results, catalogue, as_of=as_of)
        return middle - began, time.perf_counter() - middle, table

    runs = [split_run() for _ in range(args.repeat)]
    rules_s, table_s, table = min(runs, key=lambda r: r[0] + r[1])
    seconds = rules_s + table_s
    cold = runs[0][0] + runs[0][1]
    verdict = "OK" if seconds <= BUDGET_SECONDS else "OVER BUDGET"
    print(
        f"evaluate_tags:   {seconds:7.2f} s  best of {args.repeat} -> {len(table):,} tag rows "
        f"(budget {BUDGET_SECONDS:.1f} s: {verdict}); first run {cold:.2f} s"
    )
    print(
        f"  rules {rules_s:.2f} s (incl. placing window events on customers from the "
        f"prepared events), long table {table_s:.2f} s"
    )
    sizes = table.groupby("tag_id", observed=True).size().sort_values(ascending=False)
    print("  largest tags: " + ", ".join(f"{k} {v:,}" for k, v in sizes.head(5).items()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"  machine load average during the run: {load:.1f} on {os.cpu_count()} cores")
    print(f"  NUMPY_MADVISE_HUGEPAGE={os.environ['NUMPY_MADVISE_HUGEPAGE']}")
    began = time.perf_counter()
    raw_table = evaluate_tags(features, events, catalogue, as_of=as_of)
    raw_s = time.perf_counter() - began
    same = _same_table(raw_table, table)
    print(
        f"  with the raw events frame instead (ids hashed onto customers): {raw_s:.2f} s, "
        f"{'same rows' if same else 'DIFFERENT ROWS'}"
    )
    if not same:
        sys.exit("MISMATCH between the prepared and the raw events paths")
    del raw_table

    print("engine vs hand-written numpy, same rows and values (best of each):")
    ids = features["customer_id"]
    checks: dict[str, Callable[[], Any]] = {
        "old_customer": lambda: hand_old_customer(features),
        "rfm_segment": lambda: hand_rfm(features),
        "browse_churn": lambda: hand_browse_churn_prepared(features, prepared, as_of),
    }
    _, raw_churn = best_of(1, lambda: hand_browse_churn(features, events, as_of))
    if not np.array_equal(raw_churn, checks["browse_churn"]()):
        sys.exit("MISMATCH between the two numpy versions of browse_churn")
    for tag_id, hand in checks.items():
        t_engine, (result,) = best_of(
            args.repeat,
            partial(
                evaluate_tag_values, features, prepared, catalogue, as_of=as_of, tag_ids=[tag_id]
            ),
        )
        t_hand, expected = best_of(args.repeat, hand)
        got = sorted(
            zip(ids.iloc[result.rows], np.asarray(result.values)[result.codes], strict=True)
        )
        if tag_id == "rfm_segment":
            rows, codes = expected
            values = np.asarray([v.id for v in catalogue.get(tag_id).values])
            want = sorted(zip(ids.iloc[rows], values[codes], strict=True))
        else:
            want = sorted((i, "true") for i in ids.iloc[expected])
        if want != got:
            sys.exit(f"MISMATCH for {tag_id}: engine {len(got)} rows, numpy {len(want)}")
        print(
            f"  {tag_id:<14} engine {t_engine * 1000:8.1f} ms   numpy {t_hand * 1000:8.1f} ms"
            f"   ratio {t_engine / t_hand:6.2f}x   ({len(got):,} customers)"
        )


if __name__ == "__main__":
    from tagsmith.cli._common import user_errors

    user_errors(main)()
