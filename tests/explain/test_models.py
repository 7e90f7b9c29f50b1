"""Model reasons: per-customer contributions that add up to the model's raw score."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from explain.errors import ExplainError
from explain.models import FrameRows, contributions, explain_model, explain_row, row_matrix
from explain.profile import plain
from explain.words import FeatureWords
from features.catalog import feature_catalog
from scoring.contract import ModelContract, model_matrix
from tagsmith.cli import main
from tests.serving.project_fixture import ServedProject, build, train


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    """A generated project with tiny LightGBM champions and a tagging run."""
    return build(tmp_path_factory.mktemp("explain-models"), n_customers=300)


@pytest.mark.parametrize("target", ["churn", "value"])
def test_shap_contributions_sum_to_the_raw_score_within_1e_6(
    served: ServedProject, target: str
) -> None:
    booster, contract = train(served.features, target)
    x = model_matrix(served.features, contract)
    base, parts, method = contributions(booster, x)
    raw = booster.predict(x, raw_score=True)
    assert method == "shap"
    assert parts.shape == x.shape
    np.testing.assert_allclose(base + parts.sum(axis=1), raw, rtol=0, atol=1e-6)
    assert np.abs(parts).sum() > 0


def test_linear_models_give_their_own_decomposition() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] - 2 * x[:, 2] + rng.normal(size=200) > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    base, parts, method = contributions(model, x)
    assert method == "linear"
    np.testing.assert_allclose(base + parts.sum(axis=1), model.decision_function(x), atol=1e-9)
    with pytest.raises(ExplainError, match="no decomposition"):
        contributions(object(), x)


def _customer_with(served: ServedProject, tag_id: str) -> tuple[str, float]:
    tags = served.tags
    row = tags[tags["tag_id"] == tag_id].iloc[0]
    return str(row["customer_id"]), float(row["score"])


def test_reasons_of_the_stored_version_reproduce_the_stored_score(served: ServedProject) -> None:
    cid, stored = _customer_with(served, "churn_risk")
    booster, contract = train(served.features, "churn")  # the champion (same seed)
    row = served.features[served.features["customer_id"] == cid]
    words = FeatureWords(feature_catalog())
    reasons = explain_model(
        booster,
        contract,
        row,
        name="churn-predictor",
        version="1",
        words=words,
        stored_score=stored,
    )
    assert reasons.consistent
    assert math.isclose(reasons.score, stored, abs_tol=1e-6)
    total = reasons.base + sum(r.contribution for r in reasons.reasons) + reasons.rest
    assert math.isclose(total, reasons.raw, abs_tol=1e-9)
    assert math.isclose(
        reasons.raw,
        float(booster.predict(model_matrix(row, contract), raw_score=True)[0]),
        abs_tol=1e-6,
    )
    sizes = [abs(r.contribution) for r in reasons.reasons]
    assert sizes == sorted(sizes, reverse=True)
    assert 0 < len(reasons.reasons) <= 5
    assert reasons.scale == "log-odds"
    assert all(r.words for r in reasons.reasons)


def test_words_come_from_the_feature_catalogue() -> None:
    words = FeatureWords(feature_catalog())
    context = {"gap_mean_days": 21.0}
    assert words.describe("recency_days", 143.0, context) == (
        "no purchase for 143 days, usual gap 21 days"
    )
    assert words.describe("recency_days", None) == "never purchased"
    assert words.describe("purchase_count_30d", 2) == "2 purchase events in the last 30 days"
    assert words.describe("refund_rate", 0.25) == "refund rate 25%"
    assert words.describe("tenure_days", 400.4) == "customer for 400 days"
    assert words.describe("tenure_days", 12.25) == "customer for 12.25 days"
    assert words.describe("distinct_categories", 3) == "distinct categories 3 categories"


def test_customers_show_gives_predicted_tags_their_reasons(served: ServedProject) -> None:
    cid, stored = _customer_with(served, "churn_risk")
    root = str(served.project.root)
    result = CliRunner().invoke(
        main,
        ["--project", root, "customers", "show", cid, "--format", "json", "--role", "marketing"],
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(result.output)
    line = {t["tag_id"]: t for t in profile["tags"]}["churn_risk"]
    why = line["why"]
    assert why["method"] == "shap"
    assert why["consistent"] is True
    assert math.isclose(why["score"], stored, abs_tol=1e-6)
    assert line["version"] == f"churn-predictor/{why['version']}"
    assert {r["feature"] for r in why["reasons"]} <= set(profile["features"])
    text = CliRunner().invoke(main, ["--project", root, "customers", "show", cid])
    assert text.exit_code == 0, text.output
    assert "base " in text.output
    assert "-> score" in text.output
    # The service role may not see risk tags: no churn reasons, no churn-only features.
    service = CliRunner().invoke(
        main, ["--project", root, "customers", "show", cid, "--format", "json", "--role", "service"]
    )
    assert service.exit_code == 0, service.output
    seen = json.loads(service.output)
    assert "churn_risk" not in {t["tag_id"] for t in seen["tags"]}
    assert "churn-predictor" not in service.output


def test_model_reasons_refuse_more_than_one_row(served: ServedProject) -> None:
    booster, contract = train(served.features, "churn")
    with pytest.raises(ExplainError, match="one feature row"):
        explain_model(
            booster,
            contract,
            served.features.head(2),
            name="m",
            version="1",
            words=FeatureWords([]),
        )
    assert isinstance(contract, ModelContract)
    assert isinstance(served.features, pd.DataFrame)


def test_one_row_matrix_equals_the_contract_matrix_for_every_row(served: ServedProject) -> None:
    """Parity: the fast one-row path == scoring.contract.model_matrix (NaN where NaN)."""
    _, contract = train(served.features, "churn")
    full = model_matrix(served.features, contract)
    assert contract.categorical_levels  # the path with levels is exercised
    for pos in range(len(served.features)):
        one = row_matrix(served.features.iloc[pos : pos + 1], contract)
        np.testing.assert_array_equal(one[0], full[pos])


@pytest.mark.parametrize("target", ["churn", "value"])
def test_frame_rows_give_the_pandas_row_path_for_every_row(
    served: ServedProject, target: str
) -> None:
    """Parity: :class:`FrameRows` (arrays taken once per frame, what ``/explain`` uses)
    == :func:`row_matrix` of the pandas row, and its reasons == :func:`explain_model`'s,
    for every row; text and categorical inputs included."""
    booster, contract = train(served.features, target)
    frame = served.features.reset_index(drop=True)
    rows = FrameRows(frame)
    words = FeatureWords(feature_catalog(served.project.feature_spec()))
    assert contract.categorical_levels
    for pos in range(len(frame)):
        one = frame.iloc[pos : pos + 1]
        np.testing.assert_array_equal(rows.matrix(pos, contract), row_matrix(one, contract))
        fast = explain_row(
            booster,
            rows.matrix(pos, contract),
            contract,
            lambda n, p=pos: rows.value(n, p),
            name="m",
            version="1",
            words=words,
        )
        slow = explain_model(booster, contract, one, name="m", version="1", words=words)
        assert fast.to_json() == slow.to_json(), pos
        assert fast.lines() == slow.lines()


def test_frame_rows_quote_every_value_as_the_pandas_cell(served: ServedProject) -> None:
    """Parity: :meth:`FrameRows.value` (what ``/explain`` quotes) == ``plain`` of the
    pandas cell, for every column and row: numbers, booleans, categoricals, text."""
    frame = served.features.reset_index(drop=True)
    rows = FrameRows(frame)
    kinds = {str(frame[c].dtype) for c in frame.columns}
    assert {"category", "string"} <= kinds, kinds
    for name in frame.columns:
        for pos in range(len(frame)):
            expected = plain(frame[name].iat[pos])
            got = rows.value(str(name), pos)
            assert got == expected, (name, pos, got, expected)
            assert type(got) is type(expected), (name, pos, got, expected)
    assert rows.value("no_such_feature", 0) is None
