from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from filelock import FileLock

from tests.training.lifecycle_fixtures import FEATURES, Store, contract, log_version, make_frame
from training.errors import ModelLoadError, PromotionConflict, PromotionError
from training.gates import Gate, PromotionConfig
from training.promotion import LabelledWindow, contest, promote, rollback, score_predictions
from training.registry import ModelRegistry


class RecordingAudit:
    """Keeps appended entries in memory (the AuditSink protocol)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> None:
        self.entries.append(entry)

    @property
    def actions(self) -> list[str]:
        return [e["action"] for e in self.entries]


def recency_baseline(window: LabelledWindow) -> Mapping[str, np.ndarray]:
    recency = window.features["recency_days"].to_numpy()
    return {"recency": 1 / (1 + np.exp(-(recency - 60) / 30))}


CONFIG = PromotionConfig()


def _first_champion(registry: ModelRegistry, store: Store, window: LabelledWindow) -> None:
    result = promote(
        registry, "churn-predictor", window, CONFIG, actor="ana", baselines=recency_baseline
    )
    assert result.promoted, result.report


def test_first_promotion_must_beat_the_best_baseline(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    audit = RecordingAudit()
    no_base = promote(registry, "churn-predictor", churn_window, CONFIG, actor="ana", audit=audit)
    assert not no_base.promoted
    assert registry.alias_version("churn-predictor", "champion") is None
    result = promote(
        registry,
        "churn-predictor",
        churn_window,
        CONFIG,
        actor="ana",
        baselines=recency_baseline,
        audit=audit,
    )
    assert result.promoted
    assert result.candidate == store.versions["churn_strong"]
    assert result.report.against == "baselines"
    assert result.report.outcomes[0].reference_name == "baseline recency"
    assert registry.alias_version("churn-predictor", "champion") == result.candidate
    assert audit.actions == ["models.promote.rejected", "models.promote"]
    assert audit.entries[1]["tags"] == ["churn_risk"]
    assert audit.entries[1]["extra"]["window"]["cutoff"] == "2024-06-01 00:00:00"


def test_weak_candidate_fails_gates_and_nothing_changes(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    _first_champion(registry, store, churn_window)
    audit = RecordingAudit()
    result = promote(
        registry,
        "churn-predictor",
        churn_window,
        CONFIG,
        actor="bob",
        version=store.versions["churn_weak"],
        audit=audit,
    )
    assert not result.promoted
    assert {o.metric for o in result.report.failures} == {"auc", "brier"}
    # Both were re-scored on the window, not taken from logged metrics.
    cand = result.scores[f"v{store.versions['churn_weak']}"]
    assert cand["auc"] < 0.6
    assert result.report.outcomes[0].candidate == cand["auc"]
    assert registry.alias_version("churn-predictor", "champion") == store.versions["churn_strong"]
    assert audit.actions == ["models.promote.rejected"]


def test_comparable_candidate_passes_tolerant_gates(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    _first_champion(registry, store, churn_window)
    tolerant = PromotionConfig(
        churn_gates=[Gate(metric="auc", tolerance=0.03), Gate(metric="brier", tolerance=0.01)]
    )
    result = promote(
        registry,
        "churn-predictor",
        churn_window,
        tolerant,
        actor="bob",
        version=store.versions["churn_strong2"],
    )
    assert result.promoted, result.report
    assert result.previous_champion == store.versions["churn_strong"]
    assert result.report.against == "champion"
    assert registry.alias_version("churn-predictor", "champion") == store.versions["churn_strong2"]


def test_force_needs_a_reason_and_records_it(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    _first_champion(registry, store, churn_window)
    weak = store.versions["churn_weak"]
    with pytest.raises(PromotionError, match="--reason"):
        promote(
            registry, "churn-predictor", churn_window, CONFIG, actor="bob", version=weak, force=True
        )
    audit = RecordingAudit()
    result = promote(
        registry,
        "churn-predictor",
        churn_window,
        CONFIG,
        actor="bob",
        version=weak,
        force=True,
        reason="incident 42: old model leaks",
        audit=audit,
    )
    assert result.promoted
    assert result.forced
    assert not result.report.passed
    last = registry.history.events("churn-predictor", "champion")[-1]
    assert (last.version, last.action, last.actor, last.reason) == (
        weak,
        "force-promote",
        "bob",
        "incident 42: old model leaks",
    )
    assert audit.actions == ["models.promote.forced"]
    assert audit.entries[0]["extra"]["reason"] == "incident 42: old model leaks"
    tags = registry.client.get_model_version("churn-predictor", weak).tags
    assert tags["tagsmith.champion.reason"] == "incident 42: old model leaks"


def test_rollback_restores_previous_champion_and_history_shows_it(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    _first_champion(registry, store, churn_window)
    strong, weak = store.versions["churn_strong"], store.versions["churn_weak"]
    promote(
        registry,
        "churn-predictor",
        churn_window,
        CONFIG,
        actor="bob",
        version=weak,
        force=True,
        reason="try it",
    )
    audit = RecordingAudit()
    result = rollback(
        registry,
        "churn-predictor",
        actor="carol",
        reason="AUC dropped",
        features=churn_window.features,
        audit=audit,
    )
    assert (result.from_version, result.to_version) == (weak, strong)
    assert registry.alias_version("churn-predictor", "champion") == strong
    assert audit.actions == ["models.rollback"]
    spans = [s for s in registry.history.intervals("churn-predictor") if s.alias == "champion"]
    assert [(s.version, s.action, s.actor, s.end is None) for s in spans] == [
        (strong, "promote", "ana", False),
        (weak, "force-promote", "bob", False),
        (strong, "rollback", "carol", True),
    ]
    assert spans[0].end == spans[1].start
    with pytest.raises(PromotionError, match="first recorded champion"):
        rollback(registry, "churn-predictor", actor="carol")


def test_unloadable_version_is_never_promoted_even_forced(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    frame, churn, _ = make_frame(200, seed=3)
    model = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(
        frame[FEATURES].to_numpy(), churn
    )
    broken = log_version(store.root, "churn-predictor", model, contract("churn", FEATURES))
    source = registry.client.get_model_version("churn-predictor", broken).source
    logged = registry.client.get_logged_model(source.removeprefix("models:/"))
    shutil.rmtree(Path(logged.artifact_location.removeprefix("file://")))
    audit = RecordingAudit()
    with pytest.raises(ModelLoadError, match=f"churn-predictor/{broken}"):
        promote(
            registry,
            "churn-predictor",
            churn_window,
            CONFIG,
            actor="bob",
            version=broken,
            force=True,
            reason="ship it",
            baselines=recency_baseline,
            audit=audit,
        )
    assert registry.alias_version("churn-predictor", "champion") is None
    assert audit.actions == ["models.promote.refused"]


def test_version_failing_smoke_prediction_is_refused(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    frame, churn, _ = make_frame(200, seed=3)
    model = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(
        frame[FEATURES].to_numpy(), churn
    )
    # Its contract names a feature the window does not have (a feature-spec mismatch).
    odd = log_version(
        store.root,
        "churn-predictor",
        model,
        contract("churn", [*FEATURES[:3], "days_since_last_complaint"]),
    )
    with pytest.raises(ModelLoadError, match="days_since_last_complaint"):
        promote(
            registry,
            "churn-predictor",
            churn_window,
            CONFIG,
            actor="bob",
            version=odd,
            force=True,
            reason="ship it",
            baselines=recency_baseline,
        )
    assert registry.alias_version("churn-predictor", "champion") is None


def test_compare_and_set_refuses_a_stale_champion(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    _first_champion(registry, store, churn_window)
    with pytest.raises(PromotionConflict, match="moved meanwhile"):
        registry.move_alias(
            "churn-predictor",
            "champion",
            store.versions["churn_weak"],
            expected=None,
            actor="eve",
            action="promote",
        )
    assert registry.alias_version("churn-predictor", "champion") == store.versions["churn_strong"]


def test_held_lock_fails_cleanly(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    registry.lock_timeout = 0.2
    other = FileLock(registry.lock("churn-predictor").lock_file)
    with other, pytest.raises(PromotionConflict, match="nothing was changed"):
        promote(
            registry,
            "churn-predictor",
            churn_window,
            CONFIG,
            actor="bob",
            baselines=recency_baseline,
        )
    assert registry.alias_version("churn-predictor", "champion") is None


def test_two_concurrent_promotions_one_wins(store: Store, churn_window: LabelledWindow) -> None:
    def new_registry() -> ModelRegistry:
        return ModelRegistry(store.uri, store.root / "history.sqlite", store.root / "locks")

    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def run(who: str) -> None:
        registry = new_registry()
        barrier.wait()
        try:
            outcomes[who] = promote(
                registry,
                "churn-predictor",
                churn_window,
                CONFIG,
                actor=who,
                baselines=recency_baseline,
            )
        except PromotionError as exc:
            outcomes[who] = exc

    threads = [threading.Thread(target=run, args=(w,)) for w in ("ana", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [w for w, o in outcomes.items() if not isinstance(o, Exception)]
    lost = [o for o in outcomes.values() if isinstance(o, PromotionError)]
    assert len(won) == 1
    assert len(lost) == 1
    assert "champion" in str(lost[0])
    events = new_registry().history.events("churn-predictor", "champion")
    assert [(e.version, e.actor) for e in events] == [(store.versions["churn_strong"], won[0])]


def test_moves_outside_tagsmith_are_recorded_as_observed(
    registry: ModelRegistry, store: Store
) -> None:
    registry.client.set_registered_model_alias("churn-predictor", "champion", "2")
    observed = registry.sync_history("churn-predictor")
    assert {(e.alias, e.version, e.action) for e in observed} == {
        ("challenger", "1", "observed"),
        ("champion", "2", "observed"),
    }
    assert registry.sync_history("churn-predictor") == []


def test_value_model_promotion_uses_gini(
    registry: ModelRegistry, store: Store, value_window: LabelledWindow
) -> None:
    def zero(window: LabelledWindow) -> Mapping[str, np.ndarray]:
        return {"recency": -window.features["recency_days"].to_numpy()}

    first = promote(registry, "value-predictor", value_window, CONFIG, actor="ana", baselines=zero)
    assert first.promoted, first.report
    weak = promote(
        registry,
        "value-predictor",
        value_window,
        CONFIG,
        actor="ana",
        version=store.versions["value_weak"],
    )
    assert not weak.promoted
    assert [o.metric for o in weak.report.outcomes] == ["normalized_gini"]


def test_score_predictions_matches_hand_checked_values() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    m = score_predictions("churn", y, s)
    assert m["auc"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    v = score_predictions("value", np.array([0.0, 0.0, 10.0, 30.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert v["normalized_gini"] == pytest.approx(1.0)
    assert v["mae"] == pytest.approx((1 + 2 + 7 + 26) / 4)


def test_contest_scores_every_producer_on_the_same_labels() -> None:
    frame, churn, _ = make_frame(500, seed=11)
    rng = np.random.default_rng(0)
    table = contest(
        "churn",
        churn,
        {
            "rule predicted_churn": (frame["recency_days"] > 90).astype(float).to_numpy(),
            "baseline recency": frame["recency_days"].rank(pct=True).to_numpy(),
            "random": rng.random(500),
        },
    )
    assert list(table.columns) == [
        "producer",
        "auc",
        "pr_auc",
        "brier",
        "log_loss",
        "top_decile_lift",
    ]
    assert table["producer"].iloc[-1] == "random"
    assert table["auc"].is_monotonic_decreasing
    with pytest.raises(PromotionError, match="Expected 500 scores"):
        contest("churn", churn, {"short": np.zeros(3)})


def test_record_move_names_who_moved_an_alias_elsewhere(
    registry: ModelRegistry, store: Store
) -> None:
    event = registry.record_move(
        "churn-predictor", "challenger", actor="trainer-tom", action="train", reason="run abc"
    )
    assert event is not None
    assert (event.version, event.actor, event.action) == ("1", "trainer-tom", "train")
    assert registry.record_move("churn-predictor", "challenger", actor="x", action="train") is None
    assert registry.sync_history("churn-predictor") == []


def test_rule_producer_scores_from_the_long_table() -> None:
    import pandas as pd

    from training.promotion import rule_producer_scores

    rows = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "a"],
            "tag_id": ["browse_churn", "lifecycle_stage", "lifecycle_stage", "lifecycle_stage"],
            "value": ["true", "churned", "dormant", "active"],
        }
    )
    ids = pd.Series(["a", "b", "c", "d"])
    assert list(rule_producer_scores(rows, ids, "browse_churn")) == [1, 0, 0, 0]
    assert list(rule_producer_scores(rows, ids, "lifecycle_stage=churned")) == [0, 1, 0, 0]
    assert list(rule_producer_scores(rows, ids, "lifecycle_stage=dormant,churned")) == [0, 1, 1, 0]


def test_rollback_refuses_a_previous_champion_that_no_longer_loads(
    registry: ModelRegistry, store: Store, churn_window: LabelledWindow
) -> None:
    frame, churn, _ = make_frame(200, seed=3)
    model = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(
        frame[FEATURES].to_numpy(), churn
    )
    doomed = log_version(store.root, "churn-predictor", model, contract("churn", FEATURES))
    registry.move_alias(
        "churn-predictor", "champion", doomed, expected=None, actor="ana", action="promote"
    )
    strong = store.versions["churn_strong"]
    registry.move_alias(
        "churn-predictor", "champion", strong, expected=doomed, actor="ana", action="promote"
    )
    source = registry.client.get_model_version("churn-predictor", doomed).source
    logged = registry.client.get_logged_model(source.removeprefix("models:/"))
    shutil.rmtree(Path(logged.artifact_location.removeprefix("file://")))
    audit = RecordingAudit()
    with pytest.raises(ModelLoadError):
        rollback(
            registry, "churn-predictor", actor="carol", features=churn_window.features, audit=audit
        )
    assert registry.alias_version("churn-predictor", "champion") == strong
    assert audit.actions == ["models.rollback.refused"]


def test_load_uses_this_registry_not_the_process_default(
    registry: ModelRegistry, store: Store, tmp_path: Path
) -> None:
    import mlflow

    other = f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}"
    mlflow.set_tracking_uri(other)
    mlflow.set_registry_uri(other)
    loaded = registry.load("churn-predictor", store.versions["churn_strong"])
    assert loaded.contract.target == "churn"
    # ... and leaves the process's choice as it was.
    assert mlflow.get_tracking_uri() == other
    assert mlflow.get_registry_uri() == other


def test_load_leaves_no_mlflow_uri_in_the_environment(
    registry: ModelRegistry, store: Store
) -> None:
    """A load used to leave MLFLOW_TRACKING_URI set: a later project in the same process
    (the console, a test) then read and registered models in this registry."""
    import os

    from scoring.loading import restore_mlflow_uris, saved_mlflow_uris

    restore_mlflow_uris((None, None, None, None))
    loaded = registry.load("churn-predictor", store.versions["churn_strong"])
    assert loaded.contract.target == "churn"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert saved_mlflow_uris() == (None, None, None, None)
