"""``tagsmith facts import`` / ``summary`` through click's CliRunner."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tagsmith.cli import _common as cli_common
from tagsmith.cli import main

DATA = Path(__file__).parents[1] / "data" / "facts"
CDNOW_FLAGS = [
    "--map",
    "customer_id=0,occurred_at=1,quantity=2,amount=3",
    "--event-type",
    "purchase",
    "--date-format",
    "%Y%m%d",
]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep rich from wrapping file names (its width may be fixed when it was created).
    monkeypatch.setattr(cli_common.console, "width", 200)


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def test_cdnow_import_and_summary(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert _run(project, "init")[0] == 0
    code, out = _run(
        project, "facts", "import", "--events", str(DATA / "cdnow_sample.txt"), *CDNOW_FLAGS
    )
    assert code == 0, out
    assert "cdnow_sample.txt" in out
    assert "whitespace" in out
    assert "Customers derived from events (no customers file; signup = first event): 5" in out
    assert "Added 5 customers and 15 events" in out
    assert "No row quarantined." in out

    code, out = _run(
        project, "facts", "import", "--events", str(DATA / "cdnow_sample.txt"), *CDNOW_FLAGS
    )
    assert code == 0, out
    assert "Already imported before (same bytes): cdnow_sample.txt; 0 new events added." in out
    assert "duplicate" in out
    assert "Store now: 5 customers, 15 events" in out

    code, out = _run(project, "facts", "summary")
    assert code == 0, out
    assert "1997-01-01" in out
    assert "1998-05-28" in out
    assert "purchase" in out
    assert re.search(r"customers derived from events\s*│\s*5\s", out)
    assert out.count("cdnow_sample.txt") == 2


def test_import_with_quarantine_prints_reasons_and_file(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _run(project, "init")
    events = tmp_path / "events.csv"
    events.write_text(
        (DATA / "events.csv").read_text()
        + "c1,2021-01-04,teleport,,,,,\nc1,2021-01-04,purchase,-1,,,,\n"
    )
    code, out = _run(
        project,
        "facts",
        "import",
        "--customers",
        str(DATA / "customers.csv"),
        "--events",
        str(events),
    )
    assert code == 0, out
    assert "unknown_event_type" in out
    assert "negative_amount" in out
    files = list((project / "data" / "quarantine").glob("*-events.csv"))
    assert len(files) == 1
    assert str(files[0].name) in out.replace("\n", "")
    quarantine = pd.read_csv(files[0])
    assert quarantine["reason"].tolist() == ["unknown_event_type", "negative_amount"]
    assert quarantine["line_number"].tolist() == [8, 9]


def test_file_error_exits_2_with_one_message(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _run(project, "init")
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,when\nc1,2021-01-01\n")
    code, out = _run(project, "facts", "import", "--events", str(bad))
    assert code == 2
    assert "error:" in out
    assert "bad.csv" in out
    assert "occurred_at" in out
    assert "Traceback" not in out
    assert not (project / "data" / "facts" / "events.parquet").exists()
    code, out = _run(project, "facts", "summary")
    assert code == 0
    assert "is empty" in out


def test_import_needs_a_project(tmp_path: Path) -> None:
    code, out = _run(tmp_path / "nowhere", "facts", "import", "--events", str(DATA / "events.csv"))
    assert code == 2
    assert "tagsmith init" in out


def test_identical_purchase_rows_are_kept_and_reported(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert _run(project, "init")[0] == 0
    log = tmp_path / "log.txt"
    log.write_text("00001 19970101 1 29.33\n00001 19970101 1 29.33\n00002 19970102 2 10.00\n")
    code, out = _run(project, "facts", "import", "--events", str(log), *CDNOW_FLAGS)
    assert code == 0, out
    assert "1 identical rows kept as separate events" in out
    assert "Added 2 customers and 3 events" in out

    other = tmp_path / "q"
    assert _run(other, "init")[0] == 0
    code, out = _run(
        other, "facts", "import", "--events", str(log), *CDNOW_FLAGS, "--dedupe", "exact"
    )
    assert code == 0, out
    assert "identical rows kept" not in out
    assert "Added 2 customers and 2 events" in out
