"""Session settings: local masters get shuffles sized to their cores, the project's
``conf`` always has the last word (no JVM needed)."""

from __future__ import annotations

import os

import pytest

from spark.config import SparkConfig
from spark.session import local_cores, session_settings


@pytest.mark.parametrize(
    ("master", "cores"),
    [
        ("local", 1),
        ("local[2]", 2),
        ("local[7, 3]", 7),
        ("local[*]", max(1, os.cpu_count() or 1)),
        ("local-cluster[2,1,1024]", None),
        ("yarn", None),
        ("k8s://https://api:443", None),
    ],
)
def test_local_cores(master: str, cores: int | None) -> None:
    assert local_cores(master) == cores


def test_local_shuffles_follow_the_cores_and_conf_wins() -> None:
    settings = session_settings(SparkConfig(), "local[3]")
    assert settings["spark.sql.shuffle.partitions"] == "6"
    assert settings["spark.sql.execution.arrow.maxRecordsPerBatch"] == "100000"
    assert settings["spark.driver.host"] == "127.0.0.1"
    assert "spark.sql.shuffle.partitions" not in session_settings(SparkConfig(), "yarn")
    mine = SparkConfig(conf={"spark.sql.shuffle.partitions": "64"})
    assert session_settings(mine, "local[3]")["spark.sql.shuffle.partitions"] == "64"
