"""``tagsmith features build`` / ``show`` / ``list`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from features.snapshots import FeatureStore
from features.spec import default_spec, spec_hash
from features.store import FactStore
from tagsmith.cli import _common as cli_common
from tagsmith.cli import main

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common.console, "width", 250)


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    assert _run(root, "init")[0] == 0
    code, out = _run(
        root,
        "facts",
        "import",
        "--customers",
        str(DATA / "features_customers.csv"),
        "--events",
        str(DATA / "features_events.csv"),
    )
    assert code == 0, out
    return root


def test_build_writes_a_snapshot_with_lineage(project: Path) -> None:
    code, out = _run(project, "features", "build", "--as-of", "2021-04-01")
    assert code == 0, out
    assert "3 customers" in out
    store = FeatureStore(project / "data" / "features")
    meta = store.meta("2021-04-01")
    assert meta["as_of"] == "2021-04-01T00:00:00+00:00"
    assert meta["spec_hash"] == spec_hash(default_spec())
    assert meta["facts_fingerprint"] == FactStore(project / "data" / "facts").fingerprint()
    frame = store.read("2021-04-01")
    expected = pd.read_csv(DATA / "expected_features.csv", comment="#")
    assert list(frame["customer_id"]) == list(expected["customer_id"])
    assert frame["monetary_total"].tolist() == expected["monetary_total"].tolist()


def test_build_defaults_to_the_day_after_the_last_event(project: Path) -> None:
    code, out = _run(project, "features", "build")
    assert code == 0, out
    snaps = FeatureStore(project / "data" / "features").snapshots()
    assert list(snaps["as_of"]) == [pd.Timestamp("2021-05-02", tz="UTC")]
    # carol signed up on 2021-06-01: still no row.
    assert snaps["rows"].tolist() == [3]


def test_build_several_dates_writes_one_snapshot_each(project: Path) -> None:
    code, out = _run(project, "features", "build", "--as-of", "2021-04-01", "--as-of", "2021-03-01")
    assert code == 0, out
    snaps = FeatureStore(project / "data" / "features").snapshots()
    assert [str(d.date()) for d in snaps["as_of"]] == ["2021-03-01", "2021-04-01"]
    # bob signed up on 2021-03-01 12:00, after the first cutoff.
    assert snaps["rows"].tolist() == [2, 3]


def test_show_reads_the_snapshot_or_computes(project: Path) -> None:
    assert _run(project, "features", "build", "--as-of", "2021-04-01")[0] == 0
    code, out = _run(project, "features", "show", "alice", "--as-of", "2021-04-01")
    assert code == 0, out
    assert "(snapshot)" in out
    assert "recency_days" in out
    assert "20.6667" in out
    assert "Days from the last purchase to as_of" in out
    code, out = _run(project, "features", "show", "alice", "--as-of", "2021-03-01")
    assert code == 0, out
    assert "computed from the fact store" in out
    # As of 2021-03-01 the last purchase was Feb 9 18:00: 19.25 days earlier.
    assert "19.25" in out


def test_show_unknown_or_not_yet_signed_up_customer_is_a_clear_error(project: Path) -> None:
    code, out = _run(project, "features", "show", "nobody", "--as-of", "2021-04-01")
    assert code == 2
    assert "'nobody'" in out
    code, out = _run(project, "features", "show", "carol", "--as-of", "2021-04-01")
    assert code == 2
    assert "signed up" in out


def test_list_prints_the_catalogue_of_the_project_spec(project: Path) -> None:
    code, out = _run(project, "features", "list")
    assert code == 0, out
    assert "loyalty_score" in out
    assert "purchase_count_trend_365d" in out
    (project / "features.yaml").write_text("windows: [14]\n", encoding="utf-8")
    code, out = _run(project, "features", "list")
    assert code == 0, out
    assert "purchase_count_14d" in out
    assert "purchase_count_30d" not in out


def test_bad_spec_is_reported_with_its_file(project: Path) -> None:
    (project / "features.yaml").write_text("windowz: [14]\n", encoding="utf-8")
    code, out = _run(project, "features", "build")
    assert code == 2
    assert "features.yaml" in out
    assert "windowz" in out


def test_build_without_facts_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    assert _run(root, "init")[0] == 0
    code, out = _run(root, "features", "build")
    assert code == 2
    assert "import" in out
