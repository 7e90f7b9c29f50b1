"""Promotion and rollback of a project's models, shared by the CLI and the web console.

``tagsmith models promote`` and the console's promote button run the same steps: the
candidate's contract fixes the label horizon, the project's latest labelled window is
built exactly as training builds its test slice, and :func:`training.promotion.promote`
judges and moves the alias (audited). :class:`ProjectModelOps` hands these to the
console, with the registry and a marker that changes whenever the registry is written.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.spec import spec_hash
from tags.errors import AccessDenied
from tagsmith.project import Project
from training.errors import ModelLoadError
from training.promotion import PromotionResult, RollbackResult
from training.promotion import promote as promote_version
from training.promotion import rollback as rollback_champion
from training.registry import CHALLENGER, ModelRegistry, task_of

if TYPE_CHECKING:
    from scoring.contract import ModelContract
    from training.promotion import LabelledWindow
    from training.rescoring import Rescoring

__all__ = [
    "ProjectModelOps",
    "PromotionOutcome",
    "authorise",
    "candidate_contract",
    "latest_rescoring",
    "promote_model",
    "rollback_model",
    "smoke_features",
]


def latest_rescoring(project: Project, target: str, horizon_days: int | None) -> Rescoring:
    """The project's latest labelled window (facts -> features -> labels), as training builds it.

    Args:
        project: The project (fact store, feature spec, training config).
        target: 'churn' or 'value'.
        horizon_days: Label horizon (the candidate's); default the training config's.
    """
    from features.build import build_features
    from training.rescoring import latest_rescoring as build

    store = project.fact_store()
    return build(
        store.load_customers(),
        store.load_events(),
        target=target,
        config=project.config.training,
        feature_builder=build_features,
        spec=project.feature_spec(),
        horizon_days=horizon_days,
    )


def smoke_features(project: Project, rows: int) -> pd.DataFrame | None:
    """Current features of the first ``rows`` customers (None before any import)."""
    from features.build import build_features

    store = project.fact_store()
    if not store.exists():
        return None
    customers = store.load_customers().head(rows)
    events = store.load_events()
    events = events.loc[events["customer_id"].isin(customers["customer_id"])]
    as_of = store.last_event_at().floor("s") + pd.Timedelta(seconds=1)
    return build_features(customers, events, as_of=as_of, spec=project.feature_spec())


def candidate_contract(
    registry: ModelRegistry, name: str, version: str | None
) -> ModelContract | None:
    """The candidate's contract (None if it cannot load: promote then refuses it)."""
    ref = version or registry.alias_version(name, CHALLENGER)
    if ref is None:
        return None
    try:
        return registry.load(name, registry.resolve(name, ref)).contract
    except ModelLoadError:
        return None


@dataclass(frozen=True)
class PromotionOutcome:
    """A promotion attempt with the window it was judged on.

    Attributes:
        result: What the promotion did (gate table, verdict, alias event).
        window: The labelled window both models were re-scored on.
        spec_note: Set when the candidate was trained on another feature spec.
    """

    result: PromotionResult
    window: LabelledWindow
    spec_note: str = ""


def authorise(project: Project, role: str, action: str, *, actor: str, query: str) -> None:
    """Refuse (and audit the refusal) unless the policy grants ``role`` the ``action``.

    Promotion and rollback move what every caller is served, so they are policy actions
    checked here, where the CLI, the console and ``mlflow run`` all pass (finding 14-9).

    Raises:
        AccessDenied: The role may not take the action.
    """
    try:
        project.policy().require(role, action)
    except AccessDenied as exc:
        project.audit_log().append(
            actor=actor,
            role=role,
            action="denied",
            query=query,
            extra={"requested_action": action, "reason": str(exc)},
        )
        raise


def promote_model(
    project: Project,
    name: str,
    *,
    version: str | None,
    force: bool,
    reason: str,
    actor: str,
    role: str,
) -> PromotionOutcome:
    """Re-score the candidate and the champion on the latest labelled window; promote if
    the gates pass (or ``force`` with a reason). Audited in the project's audit log.

    Raises:
        PromotionError: No candidate, already champion, force without reason, conflict.
        ModelLoadError: The candidate cannot be loaded or fails its smoke prediction.
    """
    authorise(project, role, "promote", actor=actor, query=f"models promote {name}")
    registry = project.registry()
    contract = candidate_contract(registry, name, version)
    rescoring = latest_rescoring(
        project, task_of(name), contract.horizon_days if contract else None
    )
    current_spec = spec_hash(project.feature_spec())
    note = ""
    if contract is not None and contract.spec_hash and contract.spec_hash != current_spec:
        note = (
            f"the candidate was trained with feature spec {contract.spec_hash}; the project's "
            f"spec is now {current_spec}. The window uses the current spec (as serving will)."
        )
    result = promote_version(
        registry,
        name,
        rescoring.window,
        project.config.promotion,
        actor=actor,
        role=role,
        version=version,
        force=force,
        reason=reason,
        baselines=rescoring.baseline_scores,
        audit=project.audit_log(),
    )
    return PromotionOutcome(result=result, window=rescoring.window, spec_note=note)


def rollback_model(
    project: Project, name: str, *, reason: str, actor: str, role: str
) -> tuple[RollbackResult, bool]:
    """Restore the previous champion after a load and smoke test; audited.

    Returns:
        The rollback, and whether the restored version was smoke-tested on current
        features (False before any facts are imported: load-checked only).
    """
    authorise(project, role, "rollback", actor=actor, query=f"models rollback {name}")
    rows = project.config.promotion.smoke_rows
    features = smoke_features(project, rows)
    result = rollback_champion(
        project.registry(),
        name,
        actor=actor,
        role=role,
        reason=reason,
        features=features,
        smoke_rows=rows,
        audit=project.audit_log(),
    )
    return result, features is not None


def _stat(path: Path | str) -> tuple[int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ProjectModelOps:
    """The console's model operations on a project (``console.models.ModelOps``)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def registry(self) -> ModelRegistry:
        """The project's model registry."""
        return self.project.registry()

    def marker(self) -> Hashable:
        """Changes whenever the project's MLflow database or the alias history is written,
        and every 30 seconds (a registry elsewhere, named by ``MLFLOW_TRACKING_URI``)."""
        db = self.project.mlflow_dir / "mlflow.db"
        history = self.project.model_history_path
        files = (db, Path(f"{db}-wal"), history, Path(f"{history}-wal"))
        return (*(_stat(f) for f in files), int(time.time() // 30))

    def promote(
        self, name: str, *, version: str | None, force: bool, reason: str, actor: str, role: str
    ) -> PromotionResult:
        """:func:`promote_model` on this project."""
        return promote_model(
            self.project, name, version=version, force=force, reason=reason, actor=actor, role=role
        ).result

    def rollback(self, name: str, *, reason: str, actor: str, role: str) -> RollbackResult:
        """:func:`rollback_model` on this project."""
        return rollback_model(self.project, name, reason=reason, actor=actor, role=role)[0]
