"""Catalogue pages: every tag the role may read, with coverage; one tag in full."""

from __future__ import annotations

from typing import Any

import pandas as pd
from starlette.responses import Response

from console.charts import bar_chart, line_chart, sparkline
from console.data import StoreState, records
from console.web import Form, Ui

__all__ = ["catalogue_page", "tag_page"]

RECENT_RUNS = 12


def tag_totals(state: StoreState, tag_ids: list[str]) -> pd.DataFrame:
    """Customers holding each tag (any value) per snapshot, with their share."""
    sizes = state.sizes
    if sizes.empty or not tag_ids:
        return pd.DataFrame(columns=["as_of", "tag_id", "count", "share"])
    mine = sizes[sizes["tag_id"].isin(tag_ids)]
    totals = mine.groupby(["as_of", "tag_id"], as_index=False).agg(count=("count", "sum"))
    n = pd.Series(
        [state.n_customers.get(pd.Timestamp(d), 0) for d in totals["as_of"]], index=totals.index
    )
    totals["share"] = totals["count"] / n.where(n > 0)
    return totals


def _rows(ui: Ui, state: StoreState, tags: list[Any]) -> list[dict[str, Any]]:
    t = ui.labels
    totals = tag_totals(state, [tag.id for tag in tags])
    recent = state.dates[-RECENT_RUNS:]
    by_tag = {k: g for k, g in totals.groupby("tag_id")} if len(totals) else {}
    rows = []
    for tag in tags:
        mine = by_tag.get(tag.id)
        shares: dict[pd.Timestamp, float] = {}
        counts: dict[pd.Timestamp, int] = {}
        if mine is not None:
            for r in records(mine):
                shares[pd.Timestamp(r["as_of"])] = float(r["share"])
                counts[pd.Timestamp(r["as_of"])] = int(r["count"])
        series = [shares.get(d, 0.0) for d in recent]
        latest = state.latest
        rows.append(
            {
                "tag": tag,
                "name": t.tag(tag.id),
                "category": t.category(tag.category),
                "count": counts.get(latest, 0) if latest is not None else None,
                "share": shares.get(latest, 0.0) if latest is not None else None,
                "spark": sparkline(series, title=f"{t('coverage.recent')}: {t.tag(tag.id)}")
                if len(series) > 0
                else "",
            }
        )
    return rows


def catalogue_page(ui: Ui, form: Form) -> Response:
    """GET /catalogue: the visible tags, filtered by category and text."""
    viewer = ui.viewer
    viewer.require("read", query={"page": "catalogue"})
    catalogue = ui.console.context.catalogue
    category = ui.query.get("category", "")
    text = ui.query.get("q", "").strip().lower()
    visible = [t for t in catalogue.tags.values() if t.id in viewer.visible]
    categories = sorted({t.category for t in visible})
    shown = [
        t
        for t in visible
        if (not category or t.category == category)
        and (
            not text
            or text in t.id
            or text in t.display_name.lower()
            or text in t.description.lower()
            or text in ui.labels.tag(t.id).lower()
        )
    ]
    state = ui.console.view.current()
    viewer.record("catalogue", tags=[t.id for t in shown], query={"category": category})
    return ui.render(
        "catalogue.html.j2",
        nav="catalogue",
        rows=_rows(ui, state, shown),
        categories=[(c, ui.labels.category(c)) for c in categories],
        category=category,
        q=ui.query.get("q", ""),
        state=state,
    )


def _value_rows(ui: Ui, state: StoreState, tag: Any) -> list[dict[str, Any]]:
    cov = state.coverage
    mine = cov[cov["tag_id"] == tag.id] if len(cov) else cov
    by_value = {str(r["value"]): r for r in records(mine)}
    values = list(tag.value_ids) if tag.value_type != "boolean" else ["true"]
    values += sorted(v for v in by_value if v not in values and v != "<NA>")
    rows = []
    for value in values:
        r = by_value.get(value)
        rows.append(
            {
                "value": value,
                "name": ui.labels.value(tag.id, value),
                "count": int(r["count"]) if r is not None else 0,
                "share": float(r["share"]) if r is not None else 0.0,
                "change": None
                if r is None or pd.isna(r["share_change"])
                else float(r["share_change"]),
                "flag": str(r["flag"]) if r is not None and not pd.isna(r["flag"]) else "",
            }
        )
    return rows


def _chart(ui: Ui, state: StoreState, tag: Any, values: list[dict[str, Any]]) -> Any:
    t = ui.labels
    sizes = state.sizes
    mine = sizes[sizes["tag_id"] == tag.id] if len(sizes) else sizes
    dates = state.dates[-RECENT_RUNS:]
    title = f"{t('sizes_over_time')}: {t.tag(tag.id)}"
    if len(dates) < 2:
        return bar_chart([(v["name"], v["count"]) for v in values], title=title)
    counts = {(pd.Timestamp(r["as_of"]), str(r["value"])): int(r["count"]) for r in records(mine)}
    series = [(v["name"], [float(counts.get((d, v["value"]), 0)) for d in dates]) for v in values]
    return line_chart([f"{d:%Y-%m-%d}" for d in dates], series, title=title)


def tag_page(ui: Ui, form: Form) -> Response:
    """GET /catalogue/{tag_id}: definition, rule text, values and their sizes over time."""
    viewer = ui.viewer
    tag_id = ui.request.path_params["tag_id"]
    catalogue = ui.console.context.catalogue
    tag = catalogue.tags.get(tag_id)
    if tag is None or tag_id not in viewer.visible:
        viewer.denied("read", [tag_id], {"page": "tag"}, "not in the catalogue or not readable")
        return ui.error(
            f"Expected the id of a tag your role ({viewer.role}) may read. Got {tag_id!r}.",
            status=404,
        )
    state = ui.console.view.current()
    values = _value_rows(ui, state, tag)
    expressions = list(tag.rule.expressions()) if tag.rule is not None else []
    path = catalogue.files.get(tag_id)
    viewer.record("catalogue", tags=[tag_id], query={"tag": tag_id})
    return ui.render(
        "tag.html.j2",
        nav="catalogue",
        tag=tag,
        name=ui.labels.tag(tag_id),
        values=values,
        expressions=expressions,
        chart=_chart(ui, state, tag, values),
        file=path.name if path is not None else "",
        state=state,
    )
