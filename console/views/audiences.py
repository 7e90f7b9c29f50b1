"""Audience pages: type an expression, see the count and a sample; save; export CSV.

With JavaScript on, the page asks ``/audiences/preview`` as you type (debounced) and
swaps the result in; with it off, the same form submits and the page renders the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse

from console.audiences import AudiencePreview, columns_for
from console.web import Form, Ui
from tags.errors import AccessDenied, RuleError, TagsError

__all__ = [
    "audience_delete",
    "audience_export",
    "audience_page",
    "audience_preview",
    "audience_save",
]


def _result(ui: Ui, expression: str, as_of: str) -> tuple[AudiencePreview | None, dict[str, Any]]:
    """A preview, or what is wrong with the expression (with the CLI's caret)."""
    if not expression.strip():
        return None, {}
    try:
        return ui.console.audiences.preview(ui.viewer, expression, as_of=as_of or None), {}
    except RuleError as exc:
        line = exc.text.replace("\n", " ")
        caret = ""
        if exc.column is not None:
            col = min(max(exc.column, 1), len(line) + 1)
            caret = " " * (col - 1) + "^" * min(exc.width, max(1, len(line) - col + 1))
        where = exc.where.removeprefix("audience").lstrip(", ")
        reason = f"{where}: {exc.reason}" if where else exc.reason
        return None, {"message": reason, "text": line, "caret": caret, "status": 400}
    except AccessDenied as exc:
        return None, {"message": str(exc), "text": "", "caret": "", "status": 403}
    except TagsError as exc:
        return None, {"message": str(exc), "text": "", "caret": "", "status": 400}


def _sample_rows(ui: Ui, preview: AudiencePreview | None) -> list[dict[str, Any]]:
    if preview is None:
        return []
    t = ui.labels
    rows = []
    for record in preview.sample:
        cells = []
        for col in preview.columns[1:]:
            value = record.get(col)
            if value is None or value != value:
                cells.append("")
            elif col in ui.console.context.catalogue.tags:
                text = "true" if value is True else ("false" if value is False else str(value))
                cells.append(t.value(col, text) if text != "false" else t("no"))
            else:
                cells.append(f"{float(value):.4g}")
        cid = str(record["customer_id"])
        rows.append({"id": cid, "ref": ui.console.refs.encode(cid), "cells": cells})
    return rows


def _page_values(ui: Ui, expression: str, as_of: str) -> dict[str, Any]:
    preview, error = _result(ui, expression, as_of)
    state = ui.console.view.current()
    return {
        "expression": expression,
        "as_of": as_of,
        "dates": [f"{d:%Y-%m-%d}" for d in reversed(state.loaded_dates)],
        "preview": preview,
        "problem": error,
        "sample": _sample_rows(ui, preview),
        "headers": [
            ui.labels.tag(c) if c in ui.console.context.catalogue.tags else c
            for c in (preview.columns[1:] if preview else [])
        ],
        "may_export": ui.viewer.may("export"),
        "may_save": ui.viewer.may("audience"),
    }


def audience_page(ui: Ui, form: Form) -> Response:
    """GET /audiences: the builder (and the result when an expression is given)."""
    ui.viewer.require("audience", query={"page": "audiences"})
    expression = ui.query.get("expr", "")
    values = _page_values(ui, expression, ui.query.get("as_of", ""))
    status = values["problem"].get("status", 200)
    return ui.render(
        "audiences.html.j2",
        status=status,
        nav="audiences",
        saved=ui.console.audiences.saved(ui.viewer),
        columns=columns_for(ui.console.context.catalogue, ui.viewer.visible),
        notice=ui.query.get("notice", ""),
        **values,
    )


def audience_preview(ui: Ui, form: Form) -> Response:
    """GET /audiences/preview: the result fragment for the live count."""
    ui.viewer.require("audience", query={"page": "audiences"})
    values = _page_values(ui, ui.query.get("expr", ""), ui.query.get("as_of", ""))
    status = values["problem"].get("status", 200)
    return ui.render("_audience_result.html.j2", status=status, nav="audiences", **values)


def audience_save(ui: Ui, form: Form) -> Response:
    """POST /audiences/save: save the expression under a name."""
    name = form.get("name", "").strip()
    expression = form.get("expr", "")
    ui.console.audiences.save(ui.viewer, name, expression, form.get("description", "").strip())
    return ui.redirect("/audiences?" + urlencode({"expr": expression, "notice": f"saved:{name}"}))


def audience_delete(ui: Ui, form: Form) -> Response:
    """POST /audiences/{name}/delete."""
    name = ui.request.path_params["name"]
    ui.console.audiences.delete(ui.viewer, name)
    return ui.redirect("/audiences?notice=" + f"deleted:{name}")


def audience_export(ui: Ui, form: Form) -> Response:
    """POST /audiences/export: the selected customers as CSV (needs the export action)."""
    expression = form.get("expr", "")
    lines, _ = ui.console.audiences.export_csv(
        ui.viewer, expression, as_of=form.get("as_of") or None
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audience-{stamp}.csv"'},
    )
