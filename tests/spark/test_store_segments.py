"""Spark reads the fact store's appended event segments, not only ``events.parquet``."""

from __future__ import annotations

import shutil
from pathlib import Path

from features.importer import import_facts
from features.store import FactStore
from tagsmith.project import Project
from tagsmith.spark_engine import project_facts


def test_spark_reads_every_segment(
    spark_session: object, generated_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(generated_project, root)
    project = Project.load(root)
    before = project.fact_store().manifest()["events"]
    more = tmp_path / "more.csv"
    first = project.fact_store().load_customers()["customer_id"].iloc[0]
    more.write_text(
        "customer_id,occurred_at,event_type\n"
        f"{first},2024-12-30T10:00:00,login\n{first},2024-12-30T11:00:00,login\n"
    )
    # Any stored event is enough to append: the default waits for a million.
    store = FactStore(project.facts_dir, segment_min_rows=1)
    report = import_facts(
        store,
        config=project.config.facts,
        quarantine_dir=project.quarantine_dir,
        now=store.last_event_at(),
        events=more,
    )
    assert report.events_added == 2
    assert len(store.segment_paths()) == 1
    facts = project_facts(project, spark_session)  # type: ignore[arg-type]
    assert facts.events.count() == before + 2
