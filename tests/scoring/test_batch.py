from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.batch import NO_CHAMPION_NOTICE, InMemoryFacts, default_as_of, run_tagging
from scoring.errors import ScoringError
from synthetic import generate
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.store import TagStore

AS_OF = "2024-10-01"


@pytest.fixture(scope="module")
def facts() -> InMemoryFacts:
    data = generate(300, start="2024-01-01", end="2024-09-30", seed=3)
    return InMemoryFacts(data.customers, data.events)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(LIBRARY_DIR)


@dataclass
class FakeChurn:
    """A predictor with a fixed score per customer (the contract, without MLflow)."""

    version: str = "churn-predictor/1"
    fail: bool = False
    tag_id: str = "churn_risk"
    name: str = "churn-predictor"

    def predict_tags(self, features: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
        if self.fail:
            raise RuntimeError("model server fell over")
        score = (np.arange(len(features)) % 10) / 10
        return pd.DataFrame(
            {
                "customer_id": features["customer_id"].to_numpy(),
                "tag_id": self.tag_id,
                "value": np.where(score >= 0.7, "high", np.where(score >= 0.4, "medium", "low")),
                "score": score,
                "source": "model",
                "version": self.version,
                "as_of": as_of,
            }
        )


def test_run_writes_rule_tags_with_a_notice(
    facts: InMemoryFacts, catalogue: Catalogue, tmp_path: Path
) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    steps: list[str] = []
    result = run_tagging(
        facts=facts, catalogue=catalogue, store=store, as_of=AS_OF, on_step=steps.append
    )
    assert NO_CHAMPION_NOTICE in result.notices
    assert steps == ["load facts", "features", "rule tags", "predicted tags", "store"]
    snap = store.snapshot()
    assert set(snap["source"]) == {"rule"}
    assert "lifecycle_stage" in set(snap["tag_id"])
    assert not snap.duplicated(["customer_id", "tag_id"]).any()
    assert result.run.n_customers == 300 - int((facts.customers["signup_at"] >= AS_OF).sum())
    assert result.run.n_rows == len(snap)
    assert int(result.counts["rows"].sum()) == len(snap)


def test_same_inputs_are_not_recomputed(
    facts: InMemoryFacts, catalogue: Catalogue, tmp_path: Path
) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    first = run_tagging(facts=facts, catalogue=catalogue, store=store, as_of=AS_OF)
    steps: list[str] = []
    again = run_tagging(
        facts=facts, catalogue=catalogue, store=store, as_of=AS_OF, on_step=steps.append
    )
    assert again.run.reused
    assert again.run.run_id == first.run.run_id
    assert steps == []
    assert len(store.runs()) == 1
    forced = run_tagging(facts=facts, catalogue=catalogue, store=store, as_of=AS_OF, force=True)
    assert not forced.run.reused
    assert len(store.snapshot()) == first.run.n_rows  # replaced, not duplicated


def test_predicted_tags_join_the_snapshot_and_a_new_model_makes_a_new_run(
    facts: InMemoryFacts, catalogue: Catalogue, tmp_path: Path
) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    run_tagging(facts=facts, catalogue=catalogue, store=store, as_of=AS_OF)
    result = run_tagging(
        facts=facts, catalogue=catalogue, store=store, as_of=AS_OF, predictors=[FakeChurn()]
    )
    assert not result.run.reused
    assert NO_CHAMPION_NOTICE not in result.notices
    churn = store.snapshot(tags=["churn_risk"])
    assert len(churn) == result.run.n_customers
    assert set(churn["version"]) == {"churn-predictor/1"}
    assert churn["score"].between(0, 1).all()
    statuses = store.runs()["status"].tolist()
    assert sorted(statuses) == ["replaced", "succeeded"]


def test_failed_predictor_leaves_previous_snapshot_current(
    facts: InMemoryFacts, catalogue: Catalogue, tmp_path: Path
) -> None:
    store = TagStore(tmp_path / "tags.duckdb")
    good = run_tagging(facts=facts, catalogue=catalogue, store=store, as_of=AS_OF)
    before = store.snapshot()
    with pytest.raises(RuntimeError, match="fell over"):
        run_tagging(
            facts=facts,
            catalogue=catalogue,
            store=store,
            as_of=AS_OF,
            predictors=[FakeChurn(version="churn-predictor/2", fail=True)],
        )
    with pytest.raises(ScoringError, match="catalogued model tags"):
        run_tagging(
            facts=facts,
            catalogue=catalogue,
            store=store,
            as_of=AS_OF,
            predictors=[FakeChurn(version="churn-predictor/3", tag_id="lifecycle_stage")],
        )
    assert store.run_info().run_id == good.run.run_id
    pd.testing.assert_frame_equal(store.snapshot(), before)


def test_default_as_of_is_midnight_after_the_latest_event(facts: InMemoryFacts) -> None:
    last = facts.last_event_at()
    as_of = default_as_of(last)
    assert as_of == last.normalize() + pd.Timedelta(days=1)
    assert as_of > last
