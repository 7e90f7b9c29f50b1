"""Hostile finding 14-9: anyone could promote or roll back a model.

``models promote`` and ``models rollback`` worked under the default ``marketing`` role.
They are policy actions now, checked in :mod:`tagsmith.modelops` (the path the CLI, the
console and ``mlflow run -e promote`` share), and a refusal is audited.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tags.audit import AuditLog
from tests.hostile.cli_helpers import run


@pytest.mark.parametrize(
    "argv",
    [("promote", "churn-predictor"), ("rollback", "churn-predictor", "--reason", "x")],
    ids=["promote", "rollback"],
)
def test_default_role_may_not_move_champions(tmp_path: Path, argv: tuple[str, ...]) -> None:
    root = tmp_path / "proj"
    assert run(root, "init").exit_code == 0
    refused = run(root, "models", *argv, role="marketing")
    assert refused.exit_code == 2, refused.output
    assert f"Role 'marketing' may not {argv[0]}" in refused.output
    assert "admin" in refused.output  # names the roles that may
    denied = [e for e in AuditLog(root / "data" / "audit.log").entries() if e["action"] == "denied"]
    assert denied[-1]["extra"]["requested_action"] == argv[0]
    assert denied[-1]["role"] == "marketing"
    # admin passes the policy (and then meets the real state: no model registered).
    allowed = run(root, "models", *argv, role="admin")
    assert "may not" not in allowed.output
