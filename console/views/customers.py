"""Customer pages: find a customer by id; their tags now, why, and how they changed.

The id is looked up from a POST (never a URL); the profile's URL carries an opaque
reference. "Why" names the rule case or the model band that gives the current value,
then (:mod:`explain`) every clause with the customer's values and the run's
population thresholds, or the model's top reasons adding up to its raw score.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from starlette.responses import Response

from console.data import records
from console.web import Form, Ui
from explain.errors import ExplainError
from explain.models import ModelReasons
from explain.profile import CustomerProfile
from explain.render import trace_lines
from features.errors import FeaturesError
from scoring.errors import ScoringError
from tags.errors import TagsError

__all__ = ["customer_page", "find_customer", "search_page"]

HISTORY_COLUMNS = 12


def search_page(ui: Ui, form: Form) -> Response:
    """GET /customers: the search form."""
    ui.viewer.require("read", query={"page": "customers"})
    return ui.render("customers.html.j2", nav="customers", message="", customer_id="")


def find_customer(ui: Ui, form: Form) -> Response:
    """POST /customers: look an id up in the latest snapshot, open its profile."""
    viewer = ui.viewer
    viewer.require("read", query={"page": "customers"})
    customer_id = form.get("customer_id", "").strip()
    if not customer_id or len(customer_id) > 200:
        return ui.render(
            "customers.html.j2",
            status=400,
            nav="customers",
            message="Expected a customer id of 1 to 200 characters.",
            customer_id="",
        )
    if not ui.console.view.in_latest(customer_id):
        viewer.record(
            "customer",
            n_customers=0,
            query={"customer_id_hashes": ui.console.hash_ids([customer_id])},
            extra={"found": False},
        )
        return ui.render(
            "customers.html.j2",
            status=404,
            nav="customers",
            message=ui.labels("customer.not_found"),
            customer_id=customer_id,
        )
    return ui.redirect("/customers/" + ui.console.refs.encode(customer_id))


def _why(tag: Any, value: str, score: float | None, version: str) -> str:
    """Which part of the definition gives ``value`` (the explanation issue refines it)."""
    rule = tag.rule
    if tag.source == "model":
        band = next((b for b in tag.bands if b.value == value), None)
        at_least = f" (>= {band.min:g})" if band is not None and band.min is not None else ""
        shown = "" if score is None else f"score {score:.4g} "
        return f"{shown}in band '{value}'{at_least}, from {version}"
    if rule is None:
        return ""
    if rule.when is not None:
        return f"when: {rule.when}"
    for i, case in enumerate(rule.cases, start=1):
        if case.value == value:
            return f"case {i}: {case.when}"
    if rule.else_ == value:
        return "else: no earlier case matched"
    if rule.value is not None:
        return f"value: {rule.value}"
    return ""


def _since(mine: pd.DataFrame, dates: list[pd.Timestamp]) -> str:
    """First as-of date of the unbroken run of snapshots holding the latest value."""
    by_date = {pd.Timestamp(r["as_of"]): str(r["value"]) for r in records(mine)}
    if not dates or dates[-1] not in by_date:
        return ""
    current = by_date[dates[-1]]
    since = dates[-1]
    for d in reversed(dates):
        if by_date.get(d) != current:
            break
        since = d
    return f"{since:%Y-%m-%d}"


def customer_page(ui: Ui, form: Form) -> Response:
    """GET /customers/{ref}: current tags with why, and the history of every visible tag."""
    viewer = ui.viewer
    viewer.require("read", query={"page": "customer"})
    customer_id = ui.console.refs.decode(ui.request.path_params["ref"])
    if customer_id is None:
        return ui.error(
            "Expected a customer link made by this console. Got an altered one.", status=404
        )
    view = ui.console.view
    state = view.current()
    catalogue = ui.console.context.catalogue
    visible = sorted(viewer.visible)
    history = view.history(customer_id, visible)
    dates = state.loaded_dates
    latest = state.latest
    current, timeline = [], []
    shown_dates = dates[-HISTORY_COLUMNS:]
    for tag_id, mine in history.groupby("tag_id", sort=False) if len(history) else []:
        tag = catalogue.tags.get(str(tag_id))
        if tag is None:
            continue
        mine = mine.sort_values("as_of")
        values = {pd.Timestamp(r["as_of"]): str(r["value"]) for r in records(mine)}
        now = mine[mine["as_of"] == latest] if latest is not None else mine.iloc[0:0]
        if len(now):
            row = now.iloc[-1]
            score = None if pd.isna(row["score"]) else float(row["score"])
            current.append(
                {
                    "tag": tag,
                    "name": ui.labels.tag(tag.id),
                    "category": ui.labels.category(tag.category),
                    "value": str(row["value"]),
                    "value_name": ui.labels.value(tag.id, str(row["value"])),
                    "score": score,
                    "source": str(row["source"]),
                    "version": "" if pd.isna(row["version"]) else str(row["version"]),
                    "since": _since(mine, dates),
                    "why": _why(tag, str(row["value"]), score, str(row["version"])),
                }
            )
        cells = []
        previous: str | None = None
        for d in shown_dates:
            value = values.get(d)
            cells.append(
                {
                    "text": ui.labels.value(tag.id, value) if value is not None else "",
                    "changed": value != previous and d != shown_dates[0],
                }
            )
            previous = value
        timeline.append({"name": ui.labels.tag(tag.id), "tag_id": tag.id, "cells": cells})
    returned = sorted({str(t) for t in history["tag_id"]}) if len(history) else []
    viewer.record(
        "customer",
        tags=returned,
        n_customers=1 if len(history) else 0,
        query={"customer_id_hashes": ui.console.hash_ids([customer_id])},
    )
    problem = _explained(ui, customer_id, frozenset(visible), latest, current)
    order = {t: i for i, t in enumerate(catalogue.tags)}
    current.sort(key=lambda r: order.get(r["tag"].id, 0))
    timeline.sort(key=lambda r: order.get(r["tag_id"], 0))
    return ui.render(
        "customer.html.j2",
        nav="customers",
        customer_id=customer_id,
        current=current,
        timeline=timeline,
        dates=[f"{d:%Y-%m-%d}" for d in shown_dates],
        state=state,
        found=bool(len(history)),
        explain_problem=problem,
    )


def _explained(
    ui: Ui, customer_id: str, visible: frozenset[str], latest: Any, current: list[dict[str, Any]]
) -> str:
    """Add each current tag's detailed why (``why_lines``, ``notes``); '' or the problem."""
    explain = ui.console.context.explain
    if explain is None or latest is None or not current:
        return ""
    try:
        profile: CustomerProfile = explain(customer_id, visible, latest)
    except (ExplainError, FeaturesError, TagsError, ScoringError) as exc:
        return str(exc)
    lines = {line.tag_id: line for line in profile.tags}
    for row in current:
        line = lines.get(row["tag"].id)
        if line is None:
            continue
        if line.trace is not None:
            row["why_lines"] = trace_lines(line.trace)
        elif isinstance(line.why, ModelReasons):
            row["why_lines"] = line.why.lines()
        row["notes"] = list(line.notes)
    return ""
