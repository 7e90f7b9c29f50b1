"""`tagsmith train / evaluate / predict` end to end, and the MLproject through `mlflow run`.

The project holds a small synthetic data set (the real generator) in its fact store;
training uses the real feature builder, the generator's oracle and the project's
embedded MLflow store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from features.store import FactStore
from synthetic import generate, write_synthetic
from tagsmith.cli import main
from tagsmith.cli._common import console
from tagsmith.config import ProjectConfig
from tagsmith.project import Project
from training.config import TrainingConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = TrainingConfig(num_boost_round=40, learning_rate=0.2)


@pytest.fixture(scope="module")
def project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = generate(700, start="2023-01-01", end="2024-12-31", seed=11)
    root = tmp_path_factory.mktemp("train") / "proj"
    project = Project.init(root, config=ProjectConfig(training=CONFIG))
    store = FactStore(project.facts_dir)
    with store.lock():
        store.write(
            customers=data.customers,
            events=data.events,
            log_entries=[],
            now=pd.Timestamp("2025-01-01", tz="UTC"),
        )
    write_synthetic(data, root / "raw")
    return root


@pytest.fixture
def project(project_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("TAGSMITH_USER", "ds-lee")
    monkeypatch.setattr(console, "_width", 240)
    shutil.copytree(project_template, tmp_path / "proj")
    return tmp_path / "proj"


def run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.output


def test_train_predict_evaluate(project: Path) -> None:
    code, out = run(
        project, "models", "train", "churn", "--truth", str(project / "raw" / "truth.csv")
    )
    assert code == 0, out
    for scorer in ("model", "recency", "rfm", "linear", "bgnbd", "oracle (truth)", "best baseline"):
        assert scorer in out
    assert "Registered churn-predictor version 1 as 'challenger'" in out
    _assert_mlflow_lineage(project)

    # No champion yet: predicting with the default alias says so.
    code, out = run(project, "models", "predict", "churn", "--out", str(project / "x.csv"))
    assert code == 2
    assert "champion" in out

    dest = project / "scores" / "churn.parquet"
    code, out = run(
        project,
        "models",
        "predict",
        "churn",
        "--alias",
        "challenger",
        "--as-of",
        "2024-12-01",
        "--out",
        str(dest),
    )
    assert code == 0, out
    scores = pd.read_parquet(dest)
    events = FactStore(project / "data" / "facts").load_events()
    cutoff = pd.Timestamp("2024-12-01", tz="UTC")
    buyers = events.loc[
        (events["event_type"] == "purchase") & (events["occurred_at"] < cutoff), "customer_id"
    ]
    assert sorted(scores["customer_id"]) == sorted(buyers.unique())
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["model_name"]) == {"churn-predictor"}
    assert set(scores["model_version"]) == {"1"}
    assert set(scores["horizon_days"]) == {90}
    assert list(scores.columns) == [
        "customer_id",
        "churn_probability",
        "model_name",
        "model_version",
        "horizon_days",
        "as_of",
    ]

    code, out = run(project, "models", "evaluate", "churn", "--version", "1")
    assert code == 0, out
    assert "churn-predictor/1" in out
    assert "bgnbd" in out


def _assert_mlflow_lineage(project: Path) -> None:
    """What a newcomer sees in the MLflow UI: a readable run with its datasets, described models."""
    import mlflow

    uri = Project.load(project).mlflow_tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = client.get_registered_model("churn-predictor")
    assert "probability that a customer" in model.description
    version = client.get_model_version("churn-predictor", "1")
    assert version.description.startswith("# Model card: churn-predictor")
    run_ = client.get_run(version.run_id)
    assert re.fullmatch(r"churn-90d-\d{4}-\d{2}-\d{2}", run_.info.run_name)
    inputs = {
        d.dataset.name.split("-")[1]: (d.dataset, {t.key: t.value for t in d.tags})
        for d in run_.inputs.dataset_inputs
    }
    training, tags = inputs["training"]
    assert tags["mlflow.data.context"] == "training"
    assert training.source == '{"uri": "data/facts"}'
    assert training.digest
    test, tags = inputs["test"]
    assert tags["mlflow.data.context"] == "test"
    assert json.loads(test.profile)["num_rows"] > 0


def test_user_errors_exit_2_with_a_message(project: Path) -> None:
    # 700 days of horizon leave less than training.min_history_days (60) of the two
    # years before any cutoff: not answerable (600 days now train, customer-grouped).
    code, out = run(project, "models", "train", "value", "--horizon", "700d")
    assert code == 2
    assert "Use a shorter --horizon" in out
    code, out = run(project, "models", "train", "value", "--horizon", "900d")
    assert code == 2
    assert "1 to 730 days" in out
    code, out = run(project, "models", "train", "value", "--horizon", "soon")
    assert code == 2
    assert "90d" in out
    code, out = run(
        project,
        "models",
        "predict",
        "value",
        "--alias",
        "challenger",
        "--version",
        "1",
        "--out",
        str(project / "v.csv"),
    )
    assert code == 2
    assert "not both" in out


@pytest.mark.slow
def test_mlproject_train_entry_point_runs_through_mlflow(project: Path) -> None:
    from training.tracking import ensure_experiment

    db = project / "data" / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db.as_posix()}"
    import mlflow

    mlflow.set_tracking_uri(uri)
    ensure_experiment("tagsmith-value", project / "data" / "mlflow" / "artifacts")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": str(REPO),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO),
            "-e",
            "train",
            "-P",
            f"project={project}",
            "-P",
            "target=value",
            "--env-manager",
            "local",
            "--experiment-name",
            "tagsmith-value",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("value-predictor", "challenger")
    run_ = client.get_run(version.run_id)
    # The model was logged into the run `mlflow run` created for the entry point.
    assert run_.data.tags.get("mlflow.project.entryPoint") == "train"
    assert "normalized_gini" in run_.data.metrics
    assert run_.data.params["target"] == "value"


def test_train_181_days_on_a_year_of_purchase_only_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purchase log of 365 days answers a 181-day question, loudly: customer-grouped
    splits and a small training set are warned about, and predictions carry the horizon."""
    from synthetic.purchase_log import purchase_log

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setattr(console, "_width", 400)
    data = purchase_log(3000, start="2023-01-01", end="2023-12-31", seed=5)
    root = tmp_path / "log"
    Project.init(root, config=ProjectConfig(training=CONFIG))
    log = tmp_path / "log.txt"
    ev = data.events
    log.write_text(
        "".join(
            f"{c} {d:%Y%m%d} {q:.0f} {a:.2f}\n"
            for c, d, q, a in zip(
                ev["customer_id"], ev["occurred_at"], ev["quantity"], ev["amount"], strict=True
            )
        )
    )
    code, out = run(
        root,
        "facts",
        "import",
        "--events",
        str(log),
        "--map",
        "customer_id=0,occurred_at=1,quantity=2,amount=3",
        "--event-type",
        "purchase",
        "--date-format",
        "%Y%m%d",
    )
    assert code == 0, out
    assert "identical rows kept" in out
    code, out = run(root, "models", "train", "churn", "--horizon", "181d")
    assert code == 0, out
    assert "customer-grouped" in out
    assert "Registered churn-predictor version 1" in out
    dest = root / "churn.csv"
    code, out = run(root, "models", "predict", "churn", "--alias", "challenger", "--out", str(dest))
    assert code == 0, out
    scores = pd.read_csv(dest)
    assert set(scores["horizon_days"]) == {181}
    assert scores["churn_probability"].between(0, 1).all()
    assert len(scores) == ev["customer_id"].nunique()


def _artifact_uris(root: Path) -> list[str]:
    import sqlite3

    from training.relocation import URI_COLUMNS

    with sqlite3.connect(root / "data" / "mlflow" / "mlflow.db") as con:
        return [
            value
            for table, column in URI_COLUMNS
            for (value,) in con.execute(f"SELECT {column} FROM {table}")
            if value and value.startswith("file:")
        ]


def test_a_moved_project_trains_promotes_serves_and_restores_in_its_new_place(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow stores absolute artifact URIs; the project re-points them when it moved."""
    from tagsmith.champions import champion_predictors

    def run(root: Path, *args: str) -> tuple[int, str]:
        # Each command as its own process would run it: mlflow.set_tracking_uri also
        # sets MLFLOW_TRACKING_URI in this process, which would pin the previous project.
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(main, ["--project", str(root), *args])
        return result.exit_code, result.output

    from tags.policy import default_policy_text

    (project / "policy.yaml").write_text(default_policy_text(), encoding="utf-8")
    code, out = run(project, "models", "train", "churn")
    assert code == 0, out
    moved = tmp_path / "elsewhere" / "proj"
    shutil.copytree(project, moved)
    # The old place goes away (renamed): anything still reading it fails, anything still
    # writing there would bring the path back.
    gone = project.with_name("proj-old")
    project.rename(gone)
    before = {p: p.stat().st_mtime_ns for p in gone.rglob("*")}

    code, out = run(moved, "models", "train", "churn")  # version 2 logged in the new place
    assert code == 0, out
    code, out = run(
        moved, "models", "promote", "churn-predictor", "--role", "admin", "--force", "--reason", "t"
    )
    assert code == 0, out
    code, out = run(moved, "models", "predict", "churn", "--out", str(tmp_path / "s.csv"))
    assert code == 0, out
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    predictors, _ = champion_predictors(Project.load(moved))  # what the service loads
    assert [(p.name, p.version) for p in predictors] == [("churn-predictor", "churn-predictor/2")]
    backup = tmp_path / "backup"
    code, out = run(moved, "store", "backup", str(backup), "--role", "admin")
    assert code == 0, out

    # Restored into a third place, it works there too.
    third = tmp_path / "third" / "proj"
    shutil.copytree(moved, third, ignore=shutil.ignore_patterns("data"))
    code, out = run(third, "store", "restore", str(backup), "--role", "admin", "--yes")
    assert code == 0, out
    code, out = run(third, "models", "evaluate", "churn", "--alias", "champion")
    assert code == 0, out

    assert not project.exists()
    assert {p: p.stat().st_mtime_ns for p in gone.rglob("*")} == before
    for root in (moved, third):
        uris = _artifact_uris(root)
        assert uris
        prefix = (root / "data" / "mlflow" / "artifacts").as_uri() + "/"
        assert all(u.startswith(prefix) for u in uris), uris
