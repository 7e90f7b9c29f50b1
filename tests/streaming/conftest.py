"""A small project's facts, a batch snapshot at T0 and a live tagger at T (no MLflow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.live import FactsWithLive, LiveEventLog
from features.schema import FactsConfig
from features.spec import default_spec
from features.store import FactStore
from scoring.batch import run_tagging
from streaming.tagger import LiveTagger
from synthetic import generate
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.store import TagStore

T0 = pd.Timestamp("2024-10-01", tz="UTC")  # the batch run's as-of
NOW = pd.Timestamp("2024-10-02 00:00:00", tz="UTC")  # the live clock


@dataclass
class FakeChurn:
    """A predictor whose score is a pure function of features (the contract, no MLflow)."""

    version: str = "churn-predictor/1"
    tag_id: str = "churn_risk"
    name: str = "churn-predictor"

    def predict_tags(self, features: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
        recency = features["recency_days"].fillna(999).to_numpy(dtype=float)
        score = np.clip(recency / 365.0, 0, 1)
        return pd.DataFrame(
            {
                "customer_id": features["customer_id"].to_numpy(),
                "tag_id": self.tag_id,
                "value": np.where(score >= 0.5, "high", np.where(score >= 0.2, "medium", "low")),
                "score": score,
                "source": "model",
                "version": self.version,
                "as_of": as_of,
            }
        )


@pytest.fixture(scope="session")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = generate(300, start="2024-01-01", end="2024-10-01 23:59:59", seed=5)
    return data.customers, data.events


@dataclass
class Setup:
    store: FactStore
    live: LiveEventLog
    facts: FactsWithLive
    tags: TagStore
    catalogue: Catalogue
    tagger: LiveTagger
    later: pd.DataFrame  # events after T0 (to stream)
    root: Path


@pytest.fixture
def setup(world: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> Setup:
    customers, events = world
    customers = customers[customers["signup_at"] < T0].reset_index(drop=True)
    events = events[events["customer_id"].isin(customers["customer_id"])]
    before = events[events["occurred_at"] < T0].reset_index(drop=True)
    later = events[events["occurred_at"] >= T0].reset_index(drop=True)
    store = FactStore(tmp_path / "facts")
    with store.lock():
        store.write(customers=customers, events=before, log_entries=[], now=T0)
    live = LiveEventLog(tmp_path / "facts" / "live")
    facts = FactsWithLive(store, live)
    catalogue = Catalogue.load(LIBRARY_DIR)
    tags = TagStore(tmp_path / "tags.duckdb")
    run_tagging(facts=facts, catalogue=catalogue, store=tags, as_of=T0, predictors=[FakeChurn()])
    tagger = LiveTagger(
        facts=store,
        live=live,
        tag_store=tags,
        catalogue=catalogue,
        spec=default_spec(),
        facts_config=FactsConfig(),
        predictors=[FakeChurn()],
        quarantine_dir=tmp_path / "quarantine",
        clock=lambda: NOW,
    )
    return Setup(store, live, facts, tags, catalogue, tagger, later, tmp_path)


def records(events: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready event records with ids."""
    out = []
    for i, row in enumerate(events.itertuples(index=False)):
        rec: dict[str, object] = {
            "event_id": f"e{i}-{row.customer_id}-{row.occurred_at.value}",
            "customer_id": row.customer_id,
            "occurred_at": row.occurred_at.isoformat(),
            "event_type": row.event_type,
        }
        for name in ("amount", "quantity"):
            value = getattr(row, name)
            if value == value:
                rec[name] = float(value)
        for name in ("category", "product_id", "order_id"):
            value = getattr(row, name)
            if value is not None and value is not pd.NA and value == value:
                rec[name] = str(value)
        out.append(rec)
    return out
