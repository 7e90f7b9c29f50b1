"""The Bayes bound: trace faithfulness, posterior calibration, ordering against its oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import FeaturesError
from synthetic import BayesGrid, bayes_scores, generate, oracle_churn_probability
from training.evaluation import metrics_for
from training.labels import label_table

CUTOFF = pd.Timestamp("2024-09-01", tz="UTC")
HORIZON = 90


@pytest.fixture(scope="module")
def traced():  # type: ignore[no-untyped-def]
    return generate(4000, start="2023-01-01", end="2024-12-31", seed=5, trace=True)


@pytest.fixture(scope="module")
def scores(traced):  # type: ignore[no-untyped-def]
    return bayes_scores(traced, cutoff=CUTOFF, horizon_days=HORIZON)


def test_trace_leaves_the_data_unchanged(traced) -> None:  # type: ignore[no-untyped-def]
    plain = generate(4000, start="2023-01-01", end="2024-12-31", seed=5)
    assert plain.trace is None
    pd.testing.assert_frame_equal(plain.events, traced.events)
    pd.testing.assert_frame_equal(plain.customers, traced.customers)
    pd.testing.assert_frame_equal(plain.truth, traced.truth)


def test_trace_explains_the_truth(traced) -> None:  # type: ignore[no-untyped-def]
    """The leave start is the natural one or the first coin-positive order while active."""
    tr = traced.trace
    first_coin = np.full(tr.age.size, np.inf)
    coin = tr.purchase_leave_coin
    np.minimum.at(first_coin, tr.purchase_customer[coin], tr.purchase_t[coin])
    expected = np.minimum(tr.natural_leave_at, first_coin)
    leaving_at = (
        (pd.to_datetime(traced.truth["leaving_at"], utc=True) - tr.origin) / pd.Timedelta(days=1)
    ).to_numpy(dtype=np.float64, na_value=np.inf)
    reached = expected < tr.days
    assert np.array_equal(np.isfinite(leaving_at), reached)
    assert np.allclose(leaving_at[reached], expected[reached], atol=1 / 86_400)
    # Background activity and orders add up to the events (plus signup logins and the
    # browses that lead up to orders).
    ev = traced.events
    assert (ev["event_type"] == "purchase").sum() == tr.purchase_t.size
    logins = (ev["event_type"] == "login").sum()
    assert logins == tr.login_t.size + tr.age.size


def test_population_and_probabilities(traced, scores) -> None:  # type: ignore[no-untyped-def]
    labels = label_table(traced.events, [CUTOFF], horizon_days=HORIZON)
    assert set(scores.index) == set(labels["customer_id"].astype(str))
    states = scores[["p_active", "p_leaving", "p_dropped"]].to_numpy()
    assert np.all((states >= 0) & (states <= 1 + 1e-9))
    assert np.allclose(states.sum(axis=1), 1.0)
    p = scores["p_no_purchase"].to_numpy()
    assert np.all((p >= 0) & (p <= 1))


def test_state_posterior_is_calibrated(traced, scores) -> None:  # type: ignore[no-untyped-def]
    """Oracle: the truth's state at the cutoff. Expected counts match within 4 sd."""
    truth = traced.truth.set_index(traced.truth["customer_id"].astype(str)).loc[scores.index]
    dropped = (pd.to_datetime(truth["dropout_at"], utc=True) <= CUTOFF).fillna(False)
    leaving = (pd.to_datetime(truth["leaving_at"], utc=True) <= CUTOFF).fillna(False) & ~dropped
    for column, actual in (("p_dropped", dropped), ("p_leaving", leaving)):
        prob = scores[column].to_numpy()
        sd = np.sqrt(np.sum(prob * (1 - prob)))
        assert abs(prob.sum() - actual.to_numpy(dtype=bool).sum()) <= 4 * sd, column
        # Sharp where the history is clear: confident calls are mostly right.
        confident = prob > 0.9
        if confident.sum() >= 50:
            assert actual.to_numpy(dtype=bool)[confident].mean() > 0.8, column


def test_bound_sits_between_history_and_oracle(traced, scores) -> None:  # type: ignore[no-untyped-def]
    labels = label_table(traced.events, [CUTOFF], horizon_days=HORIZON)
    ids = labels["customer_id"].astype(str).to_numpy()
    y = labels["churn"].to_numpy(dtype=bool)
    oracle = oracle_churn_probability(traced.truth, cutoff=CUTOFF, horizon_days=HORIZON)
    auc = {
        "oracle": metrics_for("churn", y, oracle.reindex(ids).to_numpy())["auc"],
        "bayes": metrics_for("churn", y, scores["p_no_purchase"].reindex(ids).to_numpy())["auc"],
        "recency": metrics_for("churn", y, labels["days_since_last_purchase"].to_numpy())["auc"],
    }
    assert auc["recency"] + 0.03 < auc["bayes"] < auc["oracle"], auc


def test_quadrature_has_converged() -> None:
    """The default grid against a fine one. Customers are scored independently, so a
    smaller population shows the same convergence at a seventh of the cost (the fine
    grid is the slowest computation of the suite)."""
    traced = generate(600, start="2023-01-01", end="2024-12-31", seed=5, trace=True)
    scores = bayes_scores(traced, cutoff=CUTOFF, horizon_days=HORIZON)
    fine = bayes_scores(
        traced,
        cutoff=CUTOFF,
        horizon_days=HORIZON,
        grid=BayesGrid(tau_nodes=250, x_nodes=24, rate_nodes=64),
    )
    diff = (fine - scores).abs()
    assert diff["p_no_purchase"].mean() < 2e-3
    assert diff["p_no_purchase"].max() < 0.05
    rel = diff["expected_net_spend"] / scores["expected_net_spend"].abs().clip(lower=1.0)
    assert rel.mean() < 5e-3


def test_bad_arguments(traced) -> None:  # type: ignore[no-untyped-def]
    plain = generate(50, seed=1)
    with pytest.raises(FeaturesError, match="trace=True"):
        bayes_scores(plain, cutoff=CUTOFF, horizon_days=HORIZON)
    with pytest.raises(FeaturesError, match="within the generated"):
        bayes_scores(traced, cutoff="2030-01-01", horizon_days=HORIZON)
