"""Feature visibility: a feature is visible to a role only through a tag it may see."""

from __future__ import annotations

from explain.visibility import FeatureVisibility, rule_features
from features.catalog import feature_catalog
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.policy import AccessPolicy

NAMES = [f.name for f in feature_catalog()]


def _policy() -> AccessPolicy:
    return AccessPolicy.default()


def test_rule_features_are_the_names_a_rule_reads_without_its_let_names() -> None:
    catalogue = Catalogue.load(LIBRARY_DIR)
    assert rule_features(catalogue, "rfm_segment", NAMES) == {
        "never_purchased",
        "recency_days",
        "frequency_orders",
        "monetary_total",
    }
    assert rule_features(catalogue, "refund_risk", NAMES) == {"refund_rate", "frequency_orders"}
    # Event windows read raw events, not features.
    assert rule_features(catalogue, "complaint_risk", NAMES) == set()


def test_a_role_without_restricted_tags_sees_no_feature_only_they_read() -> None:
    catalogue = Catalogue.load(LIBRARY_DIR)
    policy = _policy()
    visibility = FeatureVisibility.build(
        catalogue,
        NAMES,
        {"value-predictor": ["monetary_total", "tenure_days"]},
        birth_year_column="birth_year",
        attribute_columns=["region"],
    )
    marketing = policy.visible("marketing", catalogue)
    executive = policy.visible("executive", catalogue)
    assert "refund_risk" not in marketing
    assert "refund_risk" in executive
    seen = visibility.features(marketing)
    assert "refund_rate" not in seen  # feeds only the restricted refund_risk
    assert "frequency_orders" in seen  # also feeds rfm_segment
    assert "refund_rate" in visibility.features(executive)
    # A model tag reveals its model's inputs; one without a known model reveals nothing.
    assert "tenure_days" in seen
    assert visibility.features(["churn_risk"]) == frozenset()
    # Attribute facts follow the features made from them.
    assert visibility.attributes(["age_band"]) == {"birth_year"}
    assert visibility.attributes(["rfm_segment"]) == frozenset()
    assert visibility.features([]) == frozenset()
