from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tags.errors import TagStoreError
from tags.store import TagStore
from tags.store_format import filters
from tests.tags.conftest import FEB, JAN, long_table

ROOT = Path(__file__).resolve().parents[2]


def _triples(df: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(zip(df["customer_id"], df["tag_id"], df["value"], strict=True))


def test_snapshot_is_the_latest_and_round_trips(store: TagStore) -> None:
    snap = store.snapshot()
    assert _triples(snap) == set(FEB)
    assert (snap["as_of"] == pd.Timestamp("2024-02-29", tz="UTC")).all()
    assert snap["run_id"].nunique() == 1
    assert _triples(store.snapshot("2024-01-31")) == set(JAN)


def test_as_of_resolves_to_the_snapshot_current_then(store: TagStore) -> None:
    assert store.resolve_as_of("2024-02-15") == pd.Timestamp("2024-01-31", tz="UTC")
    assert store.resolve_as_of("2030-01-01") == pd.Timestamp("2024-02-29", tz="UTC")
    with pytest.raises(TagStoreError, match="on or before 2023-12-01"):
        store.snapshot("2023-12-01")


def test_reading_a_missing_store_says_run_first(tmp_path: Path) -> None:
    with pytest.raises(TagStoreError, match="tagsmith tags run"):
        TagStore(tmp_path / "none.duckdb").snapshot()


def test_same_inputs_are_a_no_op(store: TagStore) -> None:
    runs_before = len(store.runs())
    info = store.write_snapshot(
        long_table(FEB, "2024-02-29"), as_of="2024-02-29", fingerprint="feb"
    )
    assert info.reused
    assert len(store.runs()) == runs_before
    assert len(store.snapshot()) == len(FEB)


def test_new_inputs_replace_the_snapshot_of_that_date(store: TagStore) -> None:
    smaller = FEB[:3]
    info = store.write_snapshot(
        long_table(smaller, "2024-02-29"), as_of="2024-02-29", fingerprint="feb-v2"
    )
    assert not info.reused
    assert _triples(store.snapshot()) == set(smaller)
    runs = store.runs().set_index("fingerprint")["status"]
    assert runs["feb"] == "replaced"
    assert runs["feb-v2"] == "succeeded"
    assert store.snapshot_dates() == [
        pd.Timestamp("2024-01-31", tz="UTC"),
        pd.Timestamp("2024-02-29", tz="UTC"),
    ]


def test_failure_before_commit_leaves_previous_snapshot_current(
    store: TagStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: TagStore, con: object) -> None:
        raise RuntimeError("injected failure mid-run")

    monkeypatch.setattr(TagStore, "_before_commit", boom)
    with pytest.raises(RuntimeError, match="injected"):
        store.write_snapshot(long_table(FEB[:2], "2024-02-29"), as_of="2024-02-29", fingerprint="x")
    with pytest.raises(RuntimeError, match="injected"):
        store.write_snapshot(long_table(FEB[:2], "2024-03-31"), as_of="2024-03-31", fingerprint="y")
    monkeypatch.undo()
    assert _triples(store.snapshot()) == set(FEB)
    assert store.latest_as_of() == pd.Timestamp("2024-02-29", tz="UTC")
    runs = store.runs().set_index("fingerprint")
    assert runs.loc["x", "status"] == "failed"
    assert "injected failure" in runs.loc["x", "error"]
    assert runs.loc["feb", "status"] == "succeeded"


def test_invalid_table_is_refused_before_anything_changes(store: TagStore) -> None:
    dup = long_table([*FEB, FEB[0]], "2024-02-29")
    with pytest.raises(TagStoreError, match="at most one row per customer and tag"):
        store.write_snapshot(dup, as_of="2024-02-29", fingerprint="dup")
    with pytest.raises(TagStoreError, match="as_of"):
        store.write_snapshot(long_table(FEB, "2024-02-28"), as_of="2024-02-29")
    with pytest.raises(TagStoreError, match="missing"):
        store.write_snapshot(
            long_table(FEB, "2024-02-29").drop(columns="source"), as_of="2024-02-29"
        )
    bad = long_table(FEB, "2024-02-29")
    bad.loc[0, "source"] = "guess"
    with pytest.raises(TagStoreError, match="source"):
        store.write_snapshot(bad, as_of="2024-02-29")
    assert _triples(store.snapshot()) == set(FEB)


def test_killed_run_leaves_previous_snapshot_current(store: TagStore) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        import pandas as pd
        from tags.store import TagStore
        def hang(self, con):
            print("inside transaction", flush=True)
            time.sleep(120)
        TagStore._before_commit = hang
        big = pd.DataFrame({{
            "customer_id": [f"k{{i}}" for i in range(20000)],
            "tag_id": "lifecycle", "value": "active", "score": float("nan"),
            "source": "rule", "version": "lifecycle@1",
        }})
        TagStore({str(store.path)!r}).write_snapshot(big, as_of="2024-02-29", fingerprint="killed")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "inside transaction"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert _triples(store.snapshot()) == set(FEB)
    # The next run notices the dead one and succeeds.
    info = store.write_snapshot(long_table(FEB[:1], "2024-03-31"), as_of="2024-03-31")
    assert info.status == "succeeded"
    statuses = store.runs().set_index("fingerprint")["status"]
    assert statuses["killed"] == "interrupted"


def test_diff_names_who_entered_and_left_each_value(store: TagStore) -> None:
    d = store.diff("2024-01-31", "2024-02-29")
    got = {
        (r.customer_id, r.tag_id, r.from_value, r.to_value, r.change)
        for r in d.astype(object).where(d.notna(), None).itertuples()
    }
    assert got == {
        ("c1", "lifecycle", "new", "active", "changed"),
        ("c3", "lifecycle", "active", "dormant", "changed"),
        ("c4", "lifecycle", "dormant", None, "left"),
        ("c5", "lifecycle", None, "new", "entered"),
        ("c2", "old_customer", None, "true", "entered"),
        ("c3", "old_customer", "true", None, "left"),
        ("c3", "rfm_segment", "general_value", "important_value", "changed"),
    }
    only = store.diff("2024-01-31", "2024-02-29", "old_customer")
    assert set(only["tag_id"]) == {"old_customer"}
    summary = store.diff_summary(d).set_index(["tag_id", "value"])
    assert summary.loc[("lifecycle", "active"), ["entered", "left", "net"]].tolist() == [1, 1, 0]
    assert summary.loc[("lifecycle", "dormant"), ["entered", "left", "net"]].tolist() == [1, 1, 0]
    assert summary.loc[("lifecycle", "new"), ["entered", "left"]].tolist() == [1, 1]
    assert summary.loc[("rfm_segment", "general_value"), "net"] == -1


def test_transitions_carry_the_date_first_seen(store: TagStore) -> None:
    mar = [("c1", "lifecycle", "dormant"), ("c3", "lifecycle", "dormant")]
    store.write_snapshot(long_table(mar, "2024-03-31"), as_of="2024-03-31")
    t = store.transitions("lifecycle", customer_id="c1")
    assert list(
        zip(t["at"].dt.strftime("%Y-%m-%d"), t["from_value"], t["to_value"], strict=True)
    ) == [
        ("2024-02-29", "new", "active"),
        ("2024-03-31", "active", "dormant"),
    ]
    history = store.history("c1", tags=["lifecycle"])
    assert history["value"].tolist() == ["new", "active", "dormant"]


def test_coverage_counts_shares_and_flags(store: TagStore) -> None:
    # March: everyone dormant, old_customer gone entirely.
    mar = [(c, "lifecycle", "dormant") for c in ("c1", "c2", "c3", "c5")]
    store.write_snapshot(long_table(mar, "2024-03-31"), as_of="2024-03-31", n_customers=5)
    cov = store.coverage(threshold=0.2, tags=["lifecycle", "old_customer"], expected_tags=["vip"])
    cov = cov.set_index(["tag_id", "value"])
    assert cov.loc[("lifecycle", "dormant"), "count"] == 4
    assert cov.loc[("lifecycle", "dormant"), "share"] == pytest.approx(4 / 5)
    assert cov.loc[("lifecycle", "dormant"), "prev_count"] == 1
    assert cov.loc[("lifecycle", "dormant"), "flag"] == "share_shift"
    assert cov.loc[("lifecycle", "active"), "count"] == 0
    assert cov.loc[("old_customer", "true"), "flag"] == "coverage_zero"
    assert "vip" not in cov.index.get_level_values(0)  # not among the tags asked for
    cov_all = store.coverage(expected_tags=["vip"])
    assert cov_all.loc[cov_all["tag_id"] == "vip", "flag"].tolist() == ["coverage_zero"]
    first = store.coverage("2024-01-31")
    assert first["prev_share"].isna().all()
    assert (first["flag"] == "").all()


def test_export_csv_and_parquet(store: TagStore, tmp_path: Path) -> None:
    rows, customers = store.export(tmp_path / "out.csv", tags=["lifecycle"])
    csv = pd.read_csv(tmp_path / "out.csv")
    assert (rows, customers) == (4, 4)
    assert set(csv["tag_id"]) == {"lifecycle"}
    assert list(csv.columns) == [
        "customer_id",
        "tag_id",
        "value",
        "score",
        "source",
        "version",
        "as_of",
        "run_id",
    ]
    store.export(tmp_path / "sub" / "out.parquet", "2024-01-31")
    pq = pd.read_parquet(tmp_path / "sub" / "out.parquet")
    assert _triples(pq) == set(JAN)
    with pytest.raises(TagStoreError, match=r"\.csv or \.parquet"):
        store.export(tmp_path / "out.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_wide_frame_one_row_per_customer(store: TagStore) -> None:
    scored = long_table(
        [("c1", "churn_risk", "high"), ("c2", "churn_risk", "low")], "2024-03-31", scores=[0.9, 0.1]
    )
    store.write_snapshot(scored, as_of="2024-03-31")
    w = store.wide("2024-02-29", tags=["lifecycle", "old_customer"], boolean_tags=["old_customer"])
    w = w.set_index("customer_id")
    assert w.loc["c1", "lifecycle"] == "active"
    assert w["old_customer"].dtype == bool
    assert w["old_customer"].to_dict() == {"c1": True, "c2": True, "c3": False, "c5": False}
    s = store.wide(tags=["churn_risk"], score_tags=["churn_risk"]).set_index("customer_id")
    assert s.loc["c1", "churn_risk_score"] == pytest.approx(0.9)


def test_snapshots_are_stored_in_customer_order_and_read_by_zone_maps(tmp_path: Path) -> None:
    # Tag-major input (the engine's order): the store must lay it out by customer, so
    # that one customer's read skips the other row groups by their min/max.
    n = 300_000
    ids = [f"C{i:07d}" for i in range(n)]
    rows = pd.DataFrame(
        {
            "customer_id": ids * 2,
            "tag_id": ["b_tag"] * n + ["a_tag"] * n,
            "value": "yes",
            "score": None,
            "source": "rule",
            "version": "v1",
        }
    )
    store = TagStore(tmp_path / "tags.duckdb")
    store.write_snapshot(rows, as_of="2024-01-31")
    with store.reader() as con:
        stored = [r[0] for r in con.execute("SELECT customer_id FROM snapshots").fetchall()]
        where, params = filters(customers=["C0123456"])
        plan = con.execute(
            f"EXPLAIN ANALYZE SELECT * FROM snapshots WHERE TRUE {where}", params
        ).fetchall()[0][1]
    assert stored == sorted(stored)
    scanned = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert scanned is not None, plan
    assert int(scanned.group(1)) <= 2 < int(scanned.group(2))
    history = store.history("C0123456")
    assert list(history["tag_id"]) == ["a_tag", "b_tag"]


def test_customer_filters_match_one_and_several_customers(store: TagStore) -> None:
    one = store.history("c1")
    assert set(one["customer_id"]) <= {"c1"}
    snap = store.snapshot(customers=["c1", "c2"])
    assert set(snap["customer_id"]) <= {"c1", "c2"}
    assert len(snap) == sum(1 for c, _, _ in FEB if c in ("c1", "c2"))
