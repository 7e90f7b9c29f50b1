"""Redundant and dead tags (tags.lint): Jaccard overlap, similar names, empty/constant."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.lint import LintConfig, jaccard_pairs, lint_catalogue, similar_names
from tags.store import TagStore
from tests.tags.conftest import long_table


def _tag(tag_id: str, name: str, *, category: str = "lifecycle", **kw) -> TagDefinition:
    base = {
        "id": tag_id,
        "display_name": name,
        "category": category,
        "description": "d",
        "owner": "o",
        "source": "rule",
        "value_type": "boolean",
        "status": "active",
        "rule": "frequency_orders >= 1",
    }
    return TagDefinition.model_validate({**base, **kw})


def _naive_pairs(rows: list[tuple[str, str, str]]) -> dict[tuple[str, str, str, str], float]:
    sets: dict[tuple[str, str], set[str]] = {}
    for cust, tag, value in rows:
        sets.setdefault((tag, value), set()).add(cust)
    out = {}
    for (ka, sa), (kb, sb) in itertools.combinations(sorted(sets.items()), 2):
        if ka[0] != kb[0] and sa & sb:
            out[(*ka, *kb)] = len(sa & sb) / len(sa | sb)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["x", "y"]),
        ),
        max_size=40,
    )
)
def test_jaccard_pairs_matches_naive_set_loop(rows: list[tuple[str, str, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    got = jaccard_pairs(frame)
    assert (got["tag_a"] < got["tag_b"]).all()
    as_dict = {
        (r["tag_a"], r["value_a"], r["tag_b"], r["value_b"]): r["jaccard"]
        for r in got.to_dict("records")
    }
    expected = _naive_pairs(rows)
    assert as_dict.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(as_dict[key] - value) < 1e-12


def test_similar_names_within_a_category_only() -> None:
    catalogue = Catalogue.from_definitions(
        [
            _tag("old_customer", "生命周期_老客户"),
            _tag("old_customers", "lifecycle_repeat buyer"),
            _tag("risky", "风险_老客户", category="risk"),
            _tag("new_customer", "lifecycle_brand new"),
        ]
    )
    found = similar_names(catalogue, threshold=0.85)
    assert [f.tags for f in found] == [("old_customer", "old_customers")]
    assert "merge 'old_customers' into 'old_customer'" in found[0].suggestion
    # Same bare name in two categories is not a finding; nor are unrelated ids.
    assert similar_names(catalogue, threshold=0.99) == []


def _store(tmp_path: Path, snapshots: dict[str, list[tuple[str, str, str]]]) -> TagStore:
    store = TagStore(tmp_path / "tags.duckdb")
    for as_of, rows in snapshots.items():
        store.write_snapshot(long_table(rows, as_of), as_of=as_of, n_customers=6)
    return store


def test_overlap_empty_and_constant_over_recent_runs(tmp_path: Path) -> None:
    catalogue = Catalogue.from_definitions(
        [
            _tag("loyal", "lifecycle_loyal"),
            _tag("repeat_buyer", "lifecycle_buys again", status="draft"),
            _tag("everyone", "lifecycle_all of them"),
            _tag("nobody", "lifecycle_no one at all"),
        ]
    )
    customers = [f"c{i}" for i in range(6)]

    def snap(repeat: list[str]) -> list[tuple[str, str, str]]:
        rows = [(c, "loyal", "true") for c in customers[:4]]
        rows += [(c, "repeat_buyer", "true") for c in repeat]
        rows += [(c, "everyone", "true") for c in customers]
        return rows

    store = _store(
        tmp_path,
        {
            "2024-01-31": snap(customers[:4]),
            "2024-02-29": snap(customers[:4]),
            "2024-03-31": snap(customers[:4]),
        },
    )
    config = LintConfig(min_members=1, runs=3)
    found = lint_catalogue(catalogue, store, config)
    kinds = {(f.kind, f.tags) for f in found}
    assert ("overlap", ("loyal", "repeat_buyer")) in kinds
    assert ("empty", ("nobody",)) in kinds
    assert ("constant", ("everyone",)) in kinds
    overlap = next(f for f in found if f.kind == "overlap" and "repeat_buyer" in f.tags)
    assert overlap.score == 1.0
    # The active tag is kept, the draft merged into it.
    assert "merge 'repeat_buyer' into 'loyal'" in overlap.suggestion
    # 'everyone' overlaps the others partly (4/6): under the threshold, not reported.
    assert not any(f.kind == "overlap" and "everyone" in f.tags for f in found)

    # An overlap must hold in every recent run: one run where they differ clears it.
    store.write_snapshot(long_table(snap(customers[:1]), "2024-04-30"), as_of="2024-04-30")
    found = lint_catalogue(catalogue, store, config)
    assert not any(f.kind == "overlap" and "repeat_buyer" in f.tags for f in found)


def test_dead_tags_need_that_many_runs(tmp_path: Path) -> None:
    catalogue = Catalogue.from_definitions(
        [_tag("loyal", "lifecycle_loyal"), _tag("nobody", "lifecycle_no one")]
    )
    store = _store(tmp_path, {"2024-01-31": [("c1", "loyal", "true")]})
    assert lint_catalogue(catalogue, store, LintConfig(runs=3)) == []
    found = lint_catalogue(catalogue, store, LintConfig(runs=1))
    assert [(f.kind, f.tags) for f in found] == [("empty", ("nobody",))]
    # No store yet: names only, no failure.
    assert lint_catalogue(catalogue, None) == []
