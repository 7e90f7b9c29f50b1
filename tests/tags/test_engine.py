"""evaluate_tags: the long-table contract and its guarantees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.engine import evaluate_tags
from tags.errors import CatalogueError, RuleEvalError, TagsError
from tags.store_format import TAG_COLUMNS
from tests.tags.conftest import make_events, make_features

AS_OF = pd.Timestamp("2024-03-01", tz="UTC")


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [
        {
            "frequency_orders": float(rng.integers(0, 8)),
            "monetary_total": float(rng.gamma(2, 80)),
            "recency_days": float(rng.integers(0, 300)),
            "loyalty_score": float(rng.random()),
            "refund_rate": float(rng.random() / 2),
            "top_category": str(rng.choice(["books", "shoes", "toys"])),
        }
        for _ in range(200)
    ]
    for row in rows[:20]:
        row.update(
            never_purchased=True, frequency_orders=0.0, monetary_total=0.0, recency_days=np.nan
        )
    return make_features(rows)


def _events(frame: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    ids = frame["customer_id"].tolist()
    records = [
        {
            "customer_id": str(rng.choice(ids)),
            "occurred_at": AS_OF - pd.Timedelta(days=float(rng.uniform(0, 120))),
            "event_type": str(rng.choice(["browse", "complaint", "purchase"])),
        }
        for _ in range(3000)
    ]
    return make_events(records)


def test_long_table_contract(library: Catalogue) -> None:
    frame = _frame()
    out = evaluate_tags(frame, _events(frame), library, as_of=AS_OF)
    assert tuple(out.columns) == TAG_COLUMNS
    assert {c: str(t) for c, t in out.dtypes.items()} == {
        "customer_id": "category",
        "tag_id": "category",
        "value": "category",
        "score": "float64",
        "source": "category",
        "version": "category",
        "as_of": "datetime64[us, UTC]",
    }
    # String columns are categoricals of strings: no Python object per row.
    for name in ("customer_id", "tag_id", "value", "source", "version"):
        assert out[name].cat.categories.dtype == "string", name
        assert out[name].notna().all(), name
    assert out["score"].isna().all()
    assert set(out["source"]) == {"rule"}
    assert (out["as_of"] == AS_OF).all()
    for tag_id, version in out[["tag_id", "version"]].drop_duplicates().itertuples(index=False):
        assert version == f"{tag_id}@{library.get(tag_id).version}"
    # Every emitted tag and value is catalogued; model tags are left to models.
    for tag_id, group in out.groupby("tag_id"):
        tag = library.get(str(tag_id))
        assert tag.source != "model"
        if not tag.open_values:
            assert set(group["value"]) <= set(tag.value_ids)
    # Boolean tags: only true rows. Multi-valued: one row per customer.
    assert not out.duplicated(["customer_id", "tag_id"]).any()
    booleans = out[out["tag_id"].isin(["old_customer", "refund_risk", "complaint_risk"])]
    assert set(booleans["value"]) == {"true"}
    old = set(out.loc[out["tag_id"] == "old_customer", "customer_id"])
    assert old == set(frame.loc[frame["frequency_orders"] >= 3, "customer_id"])
    lifecycle = out[out["tag_id"] == "lifecycle_stage"]
    assert len(lifecycle) == len(frame)


def test_only_requested_tags_and_no_model_tags(library: Catalogue) -> None:
    frame = _frame()
    out = evaluate_tags(frame, None, library, as_of=AS_OF, tag_ids=["old_customer"])
    assert set(out["tag_id"]) == {"old_customer"}
    with pytest.raises(TagsError, match="produced by models"):
        evaluate_tags(frame, None, library, as_of=AS_OF, tag_ids=["churn_risk"])
    with pytest.raises(TagsError, match="no events were given"):
        evaluate_tags(frame, None, library, as_of=AS_OF, tag_ids=["browse_churn"])


def test_missing_feature_is_named_with_suggestion(library: Catalogue) -> None:
    frame = _frame().rename(columns={"frequency_orders": "frequency_order"})
    with pytest.raises(CatalogueError) as info:
        evaluate_tags(frame, None, library, as_of=AS_OF, tag_ids=["old_customer"])
    message = str(info.value)
    assert "tag 'old_customer'" in message
    assert "Did you mean 'frequency_order'" in message
    assert "frequency_orders >= 3" in message


def test_value_outside_declared_values_is_refused() -> None:
    definition = TagDefinition.model_validate(
        {
            "id": "city_band",
            "display_name": "basic_city",
            "category": "basic",
            "description": "City band.",
            "owner": "crm",
            "source": "fact",
            "value_type": "ordinal",
            "values": ["books", "shoes"],
            "status": "active",
            "rule": {"value": "top_category"},
        }
    )
    catalogue = Catalogue.from_definitions([definition])
    frame = make_features([{"top_category": "books"}, {"top_category": "toys"}])
    with pytest.raises(RuleEvalError, match=r"Got \['toys'\]"):
        evaluate_tags(frame, None, catalogue, as_of=AS_OF)
    ok = make_features([{"top_category": "books"}, {"top_category": None}])
    out = evaluate_tags(ok, None, catalogue, as_of=AS_OF)
    assert out[["customer_id", "value"]].values.tolist() == [["c0", "books"]]


def test_duplicate_customers_are_refused(library: Catalogue) -> None:
    frame = make_features([{"customer_id": "a"}, {"customer_id": "a"}])
    with pytest.raises(TagsError, match="one feature row per customer"):
        evaluate_tags(frame, None, library, as_of=AS_OF)


def test_empty_frame_gives_empty_table(library: Catalogue) -> None:
    frame = make_features([{}]).iloc[:0]
    out = evaluate_tags(frame, make_events([]), library, as_of=AS_OF)
    assert out.empty
    assert tuple(out.columns) == TAG_COLUMNS
