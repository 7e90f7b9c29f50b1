from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.contract import model_matrix, score_frame
from training.config import TrainingConfig
from training.errors import TrainingError
from training.labels import plan_cutoffs
from training.pipeline import (
    TrainingResult,
    TrainingSet,
    build_training_set,
    select_features,
    train_predictor,
)

from .conftest import tiny_build_features

CONFIG = TrainingConfig(num_boost_round=60, learning_rate=0.1)


@pytest.fixture(scope="module")
def churn_result(facts: tuple[pd.DataFrame, pd.DataFrame]) -> TrainingResult:
    customers, events = facts
    return train_predictor(
        customers,
        events,
        target="churn",
        config=CONFIG,
        feature_builder=tiny_build_features,
        n_jobs=1,
    )


def test_churn_model_beats_chance_and_reports_every_scorer(churn_result: TrainingResult) -> None:
    r = churn_result
    assert set(r.metrics) == {"model", "recency", "rfm", "linear", "bgnbd", "paretonbd"}
    assert r.metrics["model"]["auc"] > 0.85
    assert set(r.lift) >= {"auc", "brier", "pr_auc", "log_loss", "top_decile_lift"}
    assert r.contract.calibration is not None
    assert r.contract.categorical_levels == {"region": ["east", "north", "south"]}
    assert r.rows["test"] == len(r.test) == len(r.scores["model"])
    assert {"rfm_segment", "lifecycle_stage"} <= set(r.test.columns)
    assert set(r.segment_metrics["segmentation"]) == {"rfm_segment", "lifecycle_stage"}
    assert r.importance["feature"].iloc[0] == "recency_days"


def test_test_rows_are_the_population_at_the_test_cutoff(
    churn_result: TrainingResult, facts: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, events = facts
    cutoff = churn_result.plan.test
    buyers = events.loc[
        (events["event_type"] == "purchase") & (events["occurred_at"] < cutoff), "customer_id"
    ].unique()
    assert sorted(churn_result.test["customer_id"]) == sorted(buyers)


def test_future_events_cannot_change_test_scores(
    churn_result: TrainingResult, facts: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Rewrite every event at or after the test cutoff (same span of data, other
    # outcomes): labels change, the model's test scores must not.
    customers, events = facts
    cutoff = churn_result.plan.test
    later = events["occurred_at"] >= cutoff
    changed = events.copy()
    changed.loc[later, "customer_id"] = (
        changed.loc[later, "customer_id"].sample(frac=1.0, random_state=1).to_numpy()
    )
    changed.loc[later, "amount"] = changed.loc[later, "amount"] * 3
    again = train_predictor(
        customers,
        changed,
        target="churn",
        config=CONFIG,
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    assert again.plan == churn_result.plan
    np.testing.assert_array_equal(again.scores["model"], churn_result.scores["model"])
    assert not np.array_equal(again.test["churn"], churn_result.test["churn"])


def test_model_scores_come_from_the_shared_scoring_path(
    churn_result: TrainingResult, facts: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    customers, events = facts
    cutoff = churn_result.plan.test
    feats = tiny_build_features(customers, events, as_of=cutoff)
    test = churn_result.test[["customer_id"]].merge(feats, on="customer_id")
    scores = score_frame(churn_result.estimator.booster_, test, churn_result.contract)
    np.testing.assert_allclose(scores, churn_result.scores["model"])


def test_value_model_and_oracle(facts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    customers, events = facts

    def oracle(cutoff: pd.Timestamp) -> pd.Series:
        # A stand-in oracle that knows the outcome: metrics must then be perfect.
        ev = events.loc[
            (events["occurred_at"] >= cutoff)
            & (events["occurred_at"] < cutoff + pd.Timedelta(days=90))
        ]
        signed = ev["amount"].where(ev["event_type"] == "purchase", -ev["amount"])
        signed = signed.where(ev["event_type"].isin(["purchase", "refund"]), 0.0)
        total = signed.groupby(ev["customer_id"]).sum()
        ids = customers["customer_id"]
        return total.reindex(ids, fill_value=0.0).set_axis(pd.Index(ids.astype(str)))

    r = train_predictor(
        customers,
        events,
        target="value",
        config=CONFIG,
        feature_builder=tiny_build_features,
        oracle=oracle,
        n_jobs=1,
    )
    assert r.metrics["oracle"]["normalized_gini"] == pytest.approx(1.0)
    assert r.metrics["oracle"]["mae"] == pytest.approx(0.0, abs=1e-6)
    assert r.metrics["model"]["normalized_gini"] > 0.5
    assert r.contract.calibration is None
    assert (r.scores["model"] >= 0).all()


def test_short_history_fails_clearly(facts: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    customers, events = facts
    short = events.loc[events["occurred_at"] < pd.Timestamp("2022-06-01", tz="UTC")]
    with pytest.raises(TrainingError, match="Use a shorter --horizon"):
        train_predictor(
            customers, short, target="churn", config=CONFIG, feature_builder=tiny_build_features
        )


def test_select_features_drops_ids_timestamps_and_wide_text() -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "as_of": pd.Timestamp("2024-01-01", tz="UTC"),
            "x": [1.0, 2.0],
            "flag": [True, False],
            "seen_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "region": pd.array(["n", "s"], dtype="string"),
        }
    )
    names, dropped = select_features(frame)
    assert names == ["x", "flag", "region"]
    assert dropped == {"seen_at": "timestamp"}


def test_shap_importance_is_the_mean_absolute_contribution(
    churn_result: TrainingResult, facts: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Chunks computed on two threads (two boosters) add up to one direct computation.
    customers, events = facts
    feats = tiny_build_features(customers, events, as_of=churn_result.plan.test)
    test = churn_result.test[["customer_id"]].merge(feats, on="customer_id")
    sample = test.sample(len(test), random_state=0)
    contrib = np.asarray(
        churn_result.estimator.booster_.predict(
            model_matrix(sample, churn_result.contract), pred_contrib=True
        )
    )
    expected = pd.Series(np.abs(contrib[:, :-1]).mean(axis=0), churn_result.contract.feature_names)
    got = churn_result.importance.set_index("feature")["shap"]
    np.testing.assert_allclose(got[expected.index], expected, rtol=1e-9)


def test_split_slices_are_views_of_the_cutoff_blocks(
    facts: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    customers, events = facts
    first = events.loc[events["event_type"] == "purchase", "occurred_at"].min()
    plan = plan_cutoffs(first, events["occurred_at"].max(), horizon_days=90, n_cutoffs=5)
    ts = build_training_set(customers, events, plan=plan, feature_builder=tiny_build_features)
    cut = ts.frame["cutoff"]
    expected = {
        "train": cut.isin(list(plan.train)),
        "validation": cut == plan.validation,
        "test": cut == plan.test,
        "fit": cut.isin([*plan.train, plan.validation]),
    }
    for which, mask in expected.items():
        part = ts.slice(which)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(part, ts.frame.loc[mask])
        assert np.shares_memory(
            part["recency_days"].to_numpy(), ts.frame["recency_days"].to_numpy()
        )
    # Out of order, slices still hold exactly their cutoffs' rows.
    shuffled = TrainingSet(
        frame=ts.frame.sample(frac=1.0, random_state=0),
        feature_names=ts.feature_names,
        categorical_levels=ts.categorical_levels,
        dropped_features=ts.dropped_features,
        plan=plan,
    )
    assert sorted(shuffled.slice("fit").index) == sorted(ts.frame.index[expected["fit"]])


def test_a_year_of_purchases_answers_a_181_day_question(
    facts: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    # Purchase-only, one year: the horizon fits once, so customers are split in groups.
    customers, events = facts
    year = events.loc[
        (events["event_type"] == "purchase")
        & (events["occurred_at"] >= pd.Timestamp("2023-01-01", tz="UTC"))
        & (events["occurred_at"] < pd.Timestamp("2024-01-01", tz="UTC"))
    ].reset_index(drop=True)
    config = CONFIG.model_copy(update={"horizon_days": 181})
    r = train_predictor(
        customers,
        year,
        target="churn",
        config=config,
        feature_builder=tiny_build_features,
        n_jobs=1,
    )
    assert r.plan.grouped
    assert r.plan.horizon_days == 181
    assert r.contract.horizon_days == 181
    assert r.plan.test + r.plan.horizon == pd.Timestamp("2024-01-01", tz="UTC")
    assert any("customer-grouped" in w for w in r.warnings)
    assert any("training rows" in w for w in r.warnings)  # ~1,000 rows: loud, not silent
    assert r.metrics["model"]["auc"] > 0.7
    assert np.isfinite(r.metrics["bgnbd"]["auc"])
    # No customer is in two groups; test customers only at the latest cutoff.
    plan = r.plan
    ts = build_training_set(customers, year, plan=plan, feature_builder=tiny_build_features)
    train, val, test = (set(ts.slice(w)["customer_id"]) for w in ("train", "validation", "test"))
    assert not train & val
    assert not train & test
    assert not val & test
    assert (ts.slice("test")["cutoff"] == plan.test).all()
    assert set(ts.slice("train")["cutoff"]) == set(plan.train)
    assert sorted(r.test["customer_id"]) == sorted(ts.slice("test")["customer_id"])


def test_features_without_source_facts_are_left_out_with_the_reason(
    facts: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    customers, events = facts
    # No attribute facts: the region column is constant (missing) everywhere.
    blank = customers.assign(region=pd.Series(pd.NA, index=customers.index, dtype="string"))
    first = events.loc[events["event_type"] == "purchase", "occurred_at"].min()
    plan = plan_cutoffs(first, events["occurred_at"].max(), horizon_days=90, n_cutoffs=4)
    ts = build_training_set(blank, events, plan=plan, feature_builder=tiny_build_features)
    assert "region" not in ts.feature_names
    assert ts.dropped_features["region"] == "no customer attribute facts"
    assert "recency_days" in ts.feature_names


def test_small_training_sets_pick_the_champion_candidate_on_validation(
    churn_result: TrainingResult,
) -> None:
    r = churn_result
    names = [c.name for c in r.candidates]
    assert names == ["lightgbm", "lightgbm_small_trees"]
    best = max(r.candidates, key=lambda c: c.validation["auc"])
    assert r.champion == best.name
    champion = next(c for c in r.candidates if c.name == r.champion)
    assert champion.estimator is r.estimator
    assert champion.test == r.metrics["model"]
    assert all(np.isfinite(c.test["auc"]) for c in r.candidates)


def test_without_btyd_candidates_the_pareto_nbd_scorers_are_left_out(
    facts: tuple[pd.DataFrame, pd.DataFrame], churn_result: TrainingResult
) -> None:
    # The speed benchmark's reference run: what training cost before the BTYD candidates.
    customers, events = facts
    r = train_predictor(
        customers,
        events,
        target="churn",
        config=CONFIG,
        feature_builder=tiny_build_features,
        n_jobs=1,
        btyd_candidates=False,
    )
    assert set(r.metrics) == set(churn_result.metrics) - {"paretonbd"}
    assert "blend" not in [c.name for c in r.candidates]
    assert r.metrics["model"] == pytest.approx(churn_result.metrics["model"])
