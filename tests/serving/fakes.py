"""In-memory stand-ins for the service's sources: snapshot, models, governance, audit.

``build_fake_runtime`` is a runtime factory (for ``serving.service.make_service``) so the
same fakes serve the in-process tests and a real ``bentoml serve`` subprocess
(``tests.serving.fake_app``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SchemaError
from serving.errors import ModelLoadError
from serving.keys import ApiKeyStore
from serving.rendering import Snapshot, json_row
from serving.runtime import ServingRuntime

AS_OF = pd.Timestamp("2026-06-01", tz="UTC")

CATALOG: dict[str, dict[str, Any]] = {
    "rfm_segment": {"category": "value", "sensitivity": "internal", "source": "rule"},
    "old_customer": {"category": "behaviour", "sensitivity": "public", "source": "rule"},
    "age_band": {"category": "basic", "sensitivity": "restricted", "source": "fact"},
    "churn_risk": {"category": "lifecycle", "sensitivity": "internal", "source": "model"},
    "predicted_value": {"category": "value", "sensitivity": "internal", "source": "model"},
}

ROLES: dict[str, set[str]] = {
    "admin": set(CATALOG),
    "executive": set(CATALOG),
    "marketing": {t for t, e in CATALOG.items() if e["sensitivity"] != "restricted"},
    "service": {t for t, e in CATALOG.items() if e["category"] in ("behaviour", "lifecycle")},
}

MODELS = {"churn-predictor": "churn_risk", "value-predictor": "predicted_value"}

# The features each rule tag reads (the fake models declare no inputs).
FEEDS: dict[str, frozenset[str]] = {
    "rfm_segment": frozenset({"recency_days", "frequency_orders"}),
    "old_customer": frozenset({"frequency_orders"}),
    "age_band": frozenset(),
}


def make_snapshot(n: int = 50, *, run_id: str = "run-1", as_of: pd.Timestamp = AS_OF) -> Snapshot:
    """A snapshot of ``n`` customers ``c0000..``: two features, three rule tags each."""
    rng = np.random.default_rng(7)
    ids = [f"c{i:04d}" for i in range(n)]
    features = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            "recency_days": rng.integers(0, 400, n).astype("float64"),
            "frequency_orders": rng.integers(0, 20, n).astype("float64"),
        }
    )
    rows = []
    for i, cid in enumerate(ids):
        rows.append((cid, "rfm_segment", ["important value", "general win-back"][i % 2], "rule"))
        if features["frequency_orders"].iloc[i] >= 3:
            rows.append((cid, "old_customer", "true", "rule"))
        rows.append((cid, "age_band", "26-35", "fact"))
    tags = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value", "source"])
    tags["score"] = np.nan
    tags["version"] = tags["tag_id"] + "@1"
    tags["as_of"] = as_of
    return Snapshot(tags=tags, features=features, as_of=as_of, run_id=run_id)


@dataclass
class FakeModel:
    """A linear score on the two fake features, banded like the catalogue does."""

    name: str
    version: str
    tag_id: str
    weight: float = 1.0
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def prepare(self, features: pd.DataFrame) -> np.ndarray:
        return features[["recency_days", "frequency_orders"]].to_numpy(dtype=np.float64)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        z = self.weight * (matrix[:, 0] / 100.0 - matrix[:, 1] / 5.0)
        if self.tag_id == "churn_risk":
            return 1.0 / (1.0 + np.exp(-z))
        return np.maximum(0.0, 100.0 - 10.0 * z)

    def label(self, scores: np.ndarray) -> list[str]:
        if self.tag_id == "churn_risk":
            return ["high" if s >= 0.6 else "medium" if s >= 0.3 else "low" for s in scores]
        return ["top" if s >= 120 else "mid" if s >= 80 else "low" for s in scores]


class FakeModelSource:
    """Champion versions set by the test; ``broken`` versions fail to load."""

    def __init__(self, versions: Mapping[str, str | None]) -> None:
        self.versions: dict[str, str | None] = dict(versions)
        self.broken: set[tuple[str, str]] = set()
        self.load_delay_s = 0.0
        self.loads: list[tuple[str, str]] = []

    def champion_version(self, name: str) -> str | None:
        return self.versions.get(name)

    def load(self, name: str, version: str) -> FakeModel:
        self.loads.append((name, version))
        if self.load_delay_s:
            time.sleep(self.load_delay_s)
        if (name, version) in self.broken:
            raise ModelLoadError(f"{name} version {version} failed its smoke test")
        return FakeModel(name=name, version=version, tag_id=MODELS[name], weight=float(version))


class FakeSnapshotSource:
    """Holds the latest snapshot; ``publish`` lands a new tagging run."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        self.loads = 0

    def marker(self) -> str | None:
        return None if self.snapshot is None else self.snapshot.run_id

    def load(self) -> Snapshot | None:
        self.loads += 1
        return self.snapshot

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


class FakeGovernance:
    def catalog(self) -> Mapping[str, Mapping[str, Any]]:
        return CATALOG

    def visible(self, role: str) -> frozenset[str]:
        return frozenset(ROLES.get(role, set()))

    def roles(self) -> frozenset[str]:
        return frozenset(ROLES)

    def feeds(self) -> Mapping[str, frozenset[str]]:
        return FEEDS


class ListAudit:
    """Keeps entries in a list (thread-safe)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, **entry: Any) -> None:
        with self._lock:
            self.entries.append(entry)


@dataclass(frozen=True)
class FakeScores:
    """One model's scores of the fake scorer's one customer."""

    scores: np.ndarray
    labels: list[str]


@dataclass(frozen=True)
class FakeScored:
    """What ``FakeOnlineScorer.score_live`` answers (``serving.predictions.ScoredCustomer``)."""

    features: pd.DataFrame
    tags: pd.DataFrame
    predictions: dict[str, FakeScores]

    def rule_rows(self, row: int) -> list[tuple[str, str, str]]:
        cid = self.features["customer_id"].iloc[row]
        mine = self.tags[self.tags["customer_id"] == cid]
        found = mine[["tag_id", "value", "version"]].to_numpy()
        return [(str(t), str(v), str(ver)) for t, v, ver in found]

    def row_values(self, row: int) -> dict[str, Any]:
        return json_row(self.features.iloc[row])


def _utc(value: Any) -> pd.Timestamp:
    """An event time as the live scorer reads it: datetimes or text, naive means UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class FakeOnlineScorer:
    """Features = counts over the posted events; one rule tag, like the fake snapshot."""

    def __init__(self) -> None:
        self.warmed: list[list[str]] = []

    def warm(self, models: Mapping[str, Any]) -> None:
        self.warmed.append(sorted(models))

    def score_live(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
        models: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> FakeScored:
        features, tags = self.score(customer, events, as_of=as_of)
        predictions = {}
        for name, model in (models or {}).items():
            scores = np.asarray(model.predict(model.prepare(features)), dtype=np.float64)
            predictions[name] = FakeScores(scores, list(model.label(scores)))
        return FakeScored(features, tags, predictions)

    def score(
        self,
        customer: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
        *,
        as_of: pd.Timestamp,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        if any(_utc(e["occurred_at"]) < pd.Timestamp("2000-01-01", tz="UTC") for e in events):
            raise SchemaError("Column 'occurred_at' of events must be after 2000. Got earlier.")
        purchases = [e for e in events if e["event_type"] == "purchase"]
        last = max((_utc(e["occurred_at"]) for e in purchases), default=None)
        recency = (as_of - last).days if last is not None else 999.0
        features = pd.DataFrame(
            {
                "customer_id": pd.array([str(customer["customer_id"])], dtype="string"),
                "recency_days": [float(recency)],
                "frequency_orders": [float(len(purchases))],
            }
        )
        rows = []
        if len(purchases) >= 3:
            rows.append(
                (
                    customer["customer_id"],
                    "old_customer",
                    "true",
                    np.nan,
                    "rule",
                    "old_customer@1",
                    as_of,
                )
            )
        tags = pd.DataFrame(
            rows, columns=["customer_id", "tag_id", "value", "score", "source", "version", "as_of"]
        )
        return features, tags


class FakeExplainer:
    """Echoes what the runtime hands an explainer: the selected tags and visible features."""

    def explain(
        self,
        index: Any,
        models: Mapping[str, Any],
        customer_id: str,
        selected: frozenset[str],
        features: frozenset[str],
    ) -> dict[str, Any]:
        return {
            "customer_id": customer_id,
            "found": True,
            "tags": [{"tag_id": t, "why": {"fake": True}} for t in sorted(selected)],
            "features": {f: None for f in sorted(features)},
        }


def make_runtime(
    *,
    keys_path: Path,
    n_customers: int = 50,
    versions: Mapping[str, str | None] | None = None,
    watch_interval_s: float = 0.0,
    model_source: FakeModelSource | None = None,
    explainer: FakeExplainer | None = None,
) -> tuple[ServingRuntime, FakeModelSource, FakeSnapshotSource, ListAudit]:
    """A runtime over fakes (not started)."""
    keys = ApiKeyStore(keys_path)
    models = model_source or FakeModelSource(
        versions or {"churn-predictor": "1", "value-predictor": "1"}
    )
    snapshots = FakeSnapshotSource(make_snapshot(n_customers))
    audit = ListAudit()
    runtime = ServingRuntime(
        models=MODELS,
        model_source=models,
        snapshot_source=snapshots,
        governance=FakeGovernance(),
        audit=audit,
        verify_key=keys.verify,
        id_pepper=keys.pepper,
        watch_interval_s=watch_interval_s,
        online_scorer=FakeOnlineScorer(),
        explainer=explainer,
    )
    return runtime, models, snapshots, audit


# What the last factory call built, for in-process tests to steer and inspect.
LAST: dict[str, Any] = {}


class FileVersions(FakeModelSource):
    """Champion versions read from a JSON file, so a test can "promote" across processes."""

    def __init__(self, path: Path) -> None:
        super().__init__({})
        self.path = path

    def champion_version(self, name: str) -> str | None:
        if self.path.is_file():
            return json.loads(self.path.read_text()).get(name)
        return "1"


def build_fake_runtime() -> ServingRuntime:
    """Runtime factory over the fakes, configured by the environment (also in subprocesses).

    Keys come from ``TAGSMITH_FAKE_KEYS``; champion versions from the JSON file in
    ``TAGSMITH_FAKE_VERSIONS`` when set.
    """
    versions_file = os.environ.get("TAGSMITH_FAKE_VERSIONS")
    runtime, models, snaps, audit = make_runtime(
        keys_path=Path(os.environ["TAGSMITH_FAKE_KEYS"]),
        n_customers=int(os.environ.get("TAGSMITH_FAKE_CUSTOMERS", "50")),
        watch_interval_s=float(os.environ.get("TAGSMITH_FAKE_WATCH_S", "0")),
        model_source=FileVersions(Path(versions_file)) if versions_file else None,
        explainer=FakeExplainer(),
    )
    models.load_delay_s = float(os.environ.get("TAGSMITH_FAKE_LOAD_DELAY_S", "0"))
    LAST.update(runtime=runtime, models=models, snapshots=snaps, audit=audit)
    return runtime


# The runtime factory of the in-process service (``tag_service_app``): the fakes unless a
# test installs another (``monkeypatch.setitem(ACTIVE, "factory", ...)``).
ACTIVE: dict[str, Callable[[], ServingRuntime]] = {"factory": build_fake_runtime}


def active_runtime() -> ServingRuntime:
    """Build the runtime with the active factory."""
    return ACTIVE["factory"]()
