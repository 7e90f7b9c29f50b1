"""Runs and health: tagging runs, and the flags of the latest coverage report.

Row counts of a run include every tag; a role that may not read them all sees the rows
of the tags it reads instead, so no count of a hidden tag shows through.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from starlette.responses import Response

from console.data import records
from console.web import Form, Ui
from tags.report import flag_messages

__all__ = ["runs_page"]

_SHOWN_RUNS = 50


def _rows_by_run(ui: Ui) -> dict[pd.Timestamp, int]:
    sizes = ui.console.view.current().sizes
    if sizes.empty:
        return {}
    mine = sizes[sizes["tag_id"].isin(ui.viewer.visible)]
    totals = mine.groupby("as_of", as_index=False).agg(count=("count", "sum"))
    return {pd.Timestamp(r["as_of"]): int(r["count"]) for r in records(totals)}


def _meta_notices(meta: Any) -> list[str]:
    if not isinstance(meta, str) or not meta:
        return []
    import json

    try:
        data = json.loads(meta)
    except ValueError:
        return []
    notices = data.get("notices") if isinstance(data, dict) else None
    return [str(n) for n in notices] if isinstance(notices, list) else []


def runs_page(ui: Ui, form: Form) -> Response:
    """GET /runs: tagging runs (newest first) and coverage flags of the latest snapshot."""
    viewer = ui.viewer
    viewer.require("read", query={"page": "runs"})
    state = ui.console.view.current()
    every_tag = set(ui.console.context.catalogue.tags) <= viewer.visible
    visible_rows = _rows_by_run(ui)
    runs = []
    for r in records(state.runs.head(_SHOWN_RUNS)):
        as_of = pd.Timestamp(r["as_of"])
        started = r.get("started_at")
        finished = r.get("finished_at")
        seconds = (
            (pd.Timestamp(finished) - pd.Timestamp(started)).total_seconds()
            if started is not None and finished is not None and not pd.isna(finished)
            else None
        )
        rows = r.get("n_rows") if every_tag else visible_rows.get(as_of)
        runs.append(
            {
                "run_id": r["run_id"],
                "as_of": as_of,
                "status": r["status"],
                "started": started,
                "seconds": seconds,
                "customers": r.get("n_customers"),
                "rows": rows if r["status"] == "succeeded" else None,
                "notices": _meta_notices(r.get("meta")),
                "error": r.get("error") if r["status"] == "failed" else None,
            }
        )
    coverage = state.coverage
    flags: list[dict[str, str]] = []
    if len(coverage):
        flagged = coverage[coverage["tag_id"].isin(viewer.visible) & (coverage["flag"] != "")]
        for f in flag_messages(flagged):
            f["name"] = ui.labels.tag(f["tag_id"])
            f["value_name"] = ui.labels.value(f["tag_id"], f["value"]) if f["value"] else ""
            flags.append(f)
    viewer.record("runs", tags=sorted(viewer.visible), query={"page": "runs"})
    return ui.render("runs.html.j2", nav="runs", runs=runs, flags=flags, state=state)
