"""Models pages: registered models, champion and challenger, gate tables, alias history;
promote and roll back (confirm, give a reason) for roles that may.

Promotion re-scores candidate and champion on the latest labelled window exactly as
``tagsmith models promote`` does (same function), as a job whose page shows the gate
table when it is done. Every step checks the role on the server; refusals are audited.
"""

from __future__ import annotations

from starlette.responses import Response

from console.models import ModelDesk
from console.web import Form, Ui
from training.registry import CHALLENGER

__all__ = [
    "job_page",
    "model_page",
    "models_page",
    "promote_form",
    "promote_start",
    "rollback_form",
    "rollback_start",
]

_MAX_REASON = 500
_NO_REASON = "Expected a reason (it is recorded). Got none."


def _desk(ui: Ui) -> ModelDesk | None:
    return ui.console.models


def _visible(ui: Ui, desk: ModelDesk) -> list[str]:
    viewer = ui.viewer
    return desk.visible_to(viewer.visible, viewer.may("promote") or viewer.may("rollback"))


def models_page(ui: Ui, form: Form) -> Response:
    """GET /models: every registered model the role may see."""
    viewer = ui.viewer
    viewer.require("read", query={"page": "models"})
    desk = _desk(ui)
    cards = [desk.card(name) for name in _visible(ui, desk)] if desk is not None else []
    viewer.record("models", tags=[c.tag_id for c in cards if c.tag_id], query={"page": "models"})
    return ui.render("models.html.j2", nav="models", cards=cards)


def _card_or_404(ui: Ui, name: str) -> Response | None:
    desk = _desk(ui)
    if desk is None or name not in _visible(ui, desk):
        ui.viewer.denied("read", [], {"model": name}, "no such model, or its tag is not readable")
        return ui.error(
            f"Expected a registered model your role ({ui.viewer.role}) may see. Got {name!r}.",
            status=404,
        )
    return None


def model_page(ui: Ui, form: Form) -> Response:
    """GET /models/{name}: versions, aliases, the last gate table, alias history."""
    name = ui.request.path_params["name"]
    missing = _card_or_404(ui, name)
    if missing is not None:
        return missing
    desk = _desk(ui)
    assert desk is not None
    card = desk.card(name)
    ui.viewer.record("models", tags=[card.tag_id] if card.tag_id else [], query={"model": name})
    return ui.render(
        "model.html.j2",
        nav="models",
        card=card,
        may_promote=ui.viewer.may("promote"),
        may_rollback=ui.viewer.may("rollback"),
    )


def _confirm(ui: Ui, action: str, *, problem: str = "", status: int = 200) -> Response:
    name = ui.request.path_params["name"]
    missing = _card_or_404(ui, name)
    if missing is not None:
        return missing
    ui.viewer.require(action, query={"model": name, "step": "confirm"})
    desk = _desk(ui)
    assert desk is not None
    card = desk.card(name)
    version = ui.query.get("version") or card.challenger or ""
    return ui.render(
        "confirm.html.j2",
        status=status,
        nav="models",
        card=card,
        action=action,
        version=version,
        problem=problem,
        alias=CHALLENGER,
    )


def promote_form(ui: Ui, form: Form) -> Response:
    """GET /models/{name}/promote: what will happen, a reason box and a confirm button."""
    return _confirm(ui, "promote")


def rollback_form(ui: Ui, form: Form) -> Response:
    """GET /models/{name}/rollback: the version to restore, a reason box, confirm."""
    return _confirm(ui, "rollback")


def _reason(form: Form) -> str:
    return " ".join(form.get("reason", "").split())[:_MAX_REASON]


def promote_start(ui: Ui, form: Form) -> Response:
    """POST /models/{name}/promote: start the promotion job (role, reason checked first)."""
    name = ui.request.path_params["name"]
    missing = _card_or_404(ui, name)
    if missing is not None:
        return missing
    viewer = ui.viewer
    viewer.require("promote", query={"model": name})
    reason = _reason(form)
    if not reason:
        return _confirm(ui, "promote", problem=_NO_REASON, status=400)
    version = form.get("version", "").strip() or None
    if version is not None and not version.isdigit():
        problem = f"Expected a version number. Got {version!r}."
        return _confirm(ui, "promote", problem=problem, status=400)
    desk = _desk(ui)
    assert desk is not None
    work = desk.promote_work(
        name,
        version=version,
        force=form.get("force") == "yes",
        reason=reason,
        actor=viewer.name,
        role=viewer.role,
    )
    job = ui.console.jobs.submit("promote", name, viewer.name, work)
    return ui.redirect(f"/jobs/{job.id}")


def rollback_start(ui: Ui, form: Form) -> Response:
    """POST /models/{name}/rollback: start the rollback job."""
    name = ui.request.path_params["name"]
    missing = _card_or_404(ui, name)
    if missing is not None:
        return missing
    viewer = ui.viewer
    viewer.require("rollback", query={"model": name})
    reason = _reason(form)
    if not reason:
        return _confirm(ui, "rollback", problem=_NO_REASON, status=400)
    desk = _desk(ui)
    assert desk is not None
    work = desk.rollback_work(name, reason=reason, actor=viewer.name, role=viewer.role)
    job = ui.console.jobs.submit("rollback", name, viewer.name, work)
    return ui.redirect(f"/jobs/{job.id}")


def job_page(ui: Ui, form: Form) -> Response:
    """GET /jobs/{id}: a running job refreshes itself; a finished one shows its outcome."""
    job = ui.console.jobs.get(ui.request.path_params["job_id"], ui.viewer.name)
    if job is None:
        return ui.error("Expected the id of a job you started. Got an unknown one.", status=404)
    return ui.render("job.html.j2", nav="models", job=job)
