"""The notebook reads a project (its fact store, MLflow runs and tag store) and says what
the results mean; it is committed executed, and re-runs top to bottom on a fresh project."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01-project-tour.ipynb"


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _markdown_outputs(nb: nbformat.NotebookNode) -> str:
    return "\n".join(str(o.get("data", {}).get("text/markdown", "")) for o in _outputs(nb))


def test_notebook_is_committed_executed_with_plots_and_words() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.execution_count is not None for c in code)
    assert all(c.outputs for c in code[:-1])  # the last one may print nothing
    assert not [o for o in _outputs(nb) if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in _outputs(nb)) >= 3
    words = _markdown_outputs(nb)
    assert "vs best baseline" in words
    assert "largest stage" in words
    text = nbformat.writes(nb)
    for local in ("/tmp/", "/work/", "/home/", "/root/"):
        assert local not in text  # no machine paths in the committed outputs


def _project(root: Path, raw: Path) -> None:
    from tags.policy import default_policy_text
    from tagsmith.cli import main
    from tagsmith.config import ProjectConfig
    from tagsmith.project import Project
    from training.config import TrainingConfig

    Project.init(
        root,
        config=ProjectConfig(training=TrainingConfig(num_boost_round=30, learning_rate=0.2)),
    )
    (root / "policy.yaml").write_text(default_policy_text(), encoding="utf-8")

    events = str(raw / "events.csv")
    steps = [
        ["data", "generate", "--customers", "700", "--seed", "11", "--out", str(raw)],
        ["facts", "import", "--customers", str(raw / "customers.csv"), "--events", events],
        ["models", "train", "churn", "--truth", str(raw / "truth.csv")],
        ["models", "train", "value", "--truth", str(raw / "truth.csv")],
        ["models", "promote", "churn-predictor", "--force", "--reason", "notebook test"],
        ["tags", "run", "--as-of", "2024-10-01"],
        ["tags", "run"],
    ]
    for argv in steps:
        # Running tags and promoting need a role that may (see README: roles on the CLI).
        role = ["--role", "admin"] if argv[0] == "tags" or argv[1] == "promote" else []
        result = CliRunner().invoke(main, ["--project", str(root), *argv, *role])
        assert result.exit_code == 0, (argv, result.output)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    _project(tmp_path / "proj", tmp_path / "raw")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by mlflow in this process
    monkeypatch.setenv("TAGSMITH_NOTEBOOK_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[1]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors, errors[0].evalue if errors else ""
    words = _markdown_outputs(nb)
    assert "### churn-predictor v1 (challenger, champion)" in words
    assert "### value-predictor v1 (challenger)" in words
    assert "vs best baseline" in words
    assert "largest stage" in words
    assert "is most common among" in words  # rule tags vs predicted churn risk
