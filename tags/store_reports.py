"""Reports on tag-store contents, as pure frame and query-text computations.

:class:`tags.store.TagStore` runs the queries (counts per tag value, changes between
snapshots, the wide table) and hands the frames here; keeping the arithmetic apart keeps the store
about storage and lets these be tested on hand-built frames.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pandas as pd

from tags.store_format import ident

__all__ = ["coverage_table", "diff_summary", "wide_select", "wide_types"]


def diff_summary(changes: pd.DataFrame) -> pd.DataFrame:
    """Per tag and value: customers who entered it, who left it, and the net change."""
    entered = changes.dropna(subset=["to_value"]).groupby(["tag_id", "to_value"]).size()
    left = changes.dropna(subset=["from_value"]).groupby(["tag_id", "from_value"]).size()
    entered.index.names = ["tag_id", "value"]
    left.index.names = ["tag_id", "value"]
    out = pd.DataFrame({"entered": entered, "left": left}).fillna(0).astype("int64")
    out["net"] = out["entered"] - out["left"]
    return out.reset_index().sort_values(["tag_id", "value"], ignore_index=True)


def coverage_table(
    counts: pd.DataFrame,
    before: pd.DataFrame | None,
    *,
    n_customers: int,
    prev_n_customers: int,
    threshold: float,
    tags: Collection[str] | None,
    expected_tags: Collection[str],
    attrs: dict[str, Any],
) -> pd.DataFrame:
    """Per tag value: count, share and change against the previous snapshot.

    Args:
        counts: tag_id, value, n of the reported snapshot.
        before: The same for the previous snapshot; None when there is none.
        n_customers: Customers in the reported snapshot (the share's denominator).
        prev_n_customers: Customers in the previous snapshot.
        threshold: A share moving by more than this (absolute) is flagged ``share_shift``.
        tags: Only these tags were counted (None: all).
        expected_tags: Tags that should have rows; one with none is flagged ``coverage_zero``.
        attrs: Stored on the result's ``attrs`` (as-of dates, customers).

    Returns:
        tag_id, value, count, share, prev_count, prev_share, share_change, flag.
    """
    has_prev = before is not None
    prev_counts = before if before is not None else counts.iloc[0:0]
    df = counts.merge(prev_counts, on=["tag_id", "value"], how="outer", suffixes=("", "_prev"))
    absent = [
        t for t in sorted(set(expected_tags) - set(df["tag_id"])) if tags is None or t in tags
    ]
    if absent:
        df = pd.concat([df, pd.DataFrame({"tag_id": absent, "n": 0})], ignore_index=True)
    out = pd.DataFrame(
        {
            "tag_id": df["tag_id"].astype("string"),
            "value": df["value"].astype("string"),
            "count": df["n"].fillna(0).astype("int64"),
        }
    )
    out["share"] = out["count"] / n_customers if n_customers else 0.0
    if has_prev:
        out["prev_count"] = df["n_prev"].fillna(0).astype("int64")
        out["prev_share"] = out["prev_count"] / prev_n_customers if prev_n_customers else 0.0
        out["share_change"] = out["share"] - out["prev_share"]
    else:
        out["prev_count"] = pd.array([pd.NA] * len(out), dtype="Int64")
        out["prev_share"] = float("nan")
        out["share_change"] = float("nan")
    tag_total = out.groupby("tag_id")["count"].transform("sum")
    flag = pd.Series("", index=out.index, dtype="string")
    flag[out["share_change"].abs() > threshold] = "share_shift"
    flag[tag_total == 0] = "coverage_zero"
    out["flag"] = flag
    out.attrs.update(attrs)
    return out.sort_values(["tag_id", "value"], ignore_index=True, na_position="first")


def wide_select(
    tags: Collection[str], boolean_tags: Collection[str], score_tags: Collection[str]
) -> tuple[str, list[Any]]:
    """The select list (and its parameters) of one row per customer, one column per tag."""
    select = ["customer_id"]
    params: list[Any] = []
    for tag in tags:
        if tag in boolean_tags:
            select.append(f"bool_or(tag_id = ?) AS {ident(tag)}")
        else:
            select.append(f"max(value) FILTER (WHERE tag_id = ?) AS {ident(tag)}")
        params.append(tag)
    for tag in score_tags:
        select.append(f"max(score) FILTER (WHERE tag_id = ?) AS {ident(tag + '_score')}")
        params.append(tag)
    return ", ".join(select), params


def wide_types(
    df: pd.DataFrame, tags: Collection[str], boolean_tags: Collection[str]
) -> pd.DataFrame:
    """Boolean tag columns as bool (False where the customer has no row), others as string."""
    for tag in tags:
        if tag in boolean_tags:
            df[tag] = df[tag].fillna(False).astype(bool)
        else:
            df[tag] = df[tag].astype("string")
    return df
