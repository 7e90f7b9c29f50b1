"""A local project is owned by whoever runs the CLI (issue 21).

Without ``--role`` or ``TAGSMITH_ROLE`` the CLI acts as the built-in ``owner`` (every
action, every tag), audited under the OS user; a named role is enforced; a project that
opts in to CLI roles (``access.cli_roles``) falls back to ``access.default_role``; the
service never knows the built-in owner.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from tags.audit import AuditLog
from tags.errors import AccessDenied
from tags.store import TagStore
from tagsmith.cli import main
from tagsmith.project import Project
from tests.tags.conftest import long_table

# Catalogue tag ids; complaint_risk is restricted (hidden from every role but executive).
ROWS = [
    ("c1", "lifecycle_stage", "new"),
    ("c2", "lifecycle_stage", "active"),
    ("c1", "old_customer", "true"),
    ("c2", "complaint_risk", "true"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    store = TagStore(root / "data" / "tags.duckdb")
    store.write_snapshot(long_table(ROWS, "2024-01-31"), as_of="2024-01-31")
    return root


def run(root: Path, *args: str, env_role: str | None = None):
    # TAGSMITH_USER unset too: the audit must name the OS user.
    env = {"TAGSMITH_USER": None, "TAGSMITH_ROLE": env_role}
    return CliRunner().invoke(main, ["--project", str(root), *args], env=env)


def audit(root: Path) -> list[dict]:
    return list(AuditLog(root / "data" / "audit.log").entries())


def opt_in_to_cli_roles(root: Path) -> None:
    path = root / "tagsmith.yaml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("access", {})["cli_roles"] = True
    path.write_text(yaml.safe_dump(config))


def test_no_role_acts_as_owner_audited_as_the_os_user(project: Path, tmp_path: Path) -> None:
    result = run(project, "store", "backup", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bk").exists()
    (entry,) = audit(project)
    assert (entry["action"], entry["role"]) == ("backup", "owner")
    assert entry["actor"] == getpass.getuser()


def test_owner_sees_restricted_tags_a_named_role_does_not(project: Path, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "owner.csv", tmp_path / "marketing.csv"
    assert run(project, "tags", "export", "--out", str(mine)).exit_code == 0
    named = run(project, "tags", "export", "--out", str(theirs), "--role", "marketing")
    assert named.exit_code == 0, named.output
    assert "complaint_risk" in set(pd.read_csv(mine)["tag_id"])  # restricted
    assert "complaint_risk" not in set(pd.read_csv(theirs)["tag_id"])
    assert [(e["role"], e["action"]) for e in audit(project)] == [
        ("owner", "export"),
        ("marketing", "export"),
    ]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_named_role_is_enforced(project: Path, tmp_path: Path, how: str) -> None:
    argv = ["store", "backup", str(tmp_path / "bk")]
    if how == "option":
        result = run(project, *argv, "--role", "marketing")
    else:
        result = run(project, *argv, env_role="marketing")
    assert result.exit_code == 2
    assert "'marketing' may not backup" in result.output
    assert not (tmp_path / "bk").exists()
    (entry,) = audit(project)
    assert (entry["action"], entry["role"]) == ("denied", "marketing")
    assert entry["actor"] == getpass.getuser()


def test_a_project_that_opts_in_to_cli_roles_acts_as_its_default_role(
    project: Path, tmp_path: Path
) -> None:
    opt_in_to_cli_roles(project)
    refused = run(project, "store", "backup", str(tmp_path / "bk"))
    assert refused.exit_code == 2
    assert "'marketing' may not backup" in refused.output
    # There is no built-in owner to claim either: the policy file defines none.
    claimed = run(project, "store", "backup", str(tmp_path / "bk"), "--role", "owner")
    assert claimed.exit_code == 2
    assert "Got 'owner'" in claimed.output
    allowed = run(project, "store", "backup", str(tmp_path / "bk"), "--role", "admin")
    assert allowed.exit_code == 0, allowed.output
    assert [(e["role"], e["action"]) for e in audit(project)] == [
        ("marketing", "denied"),
        ("owner", "denied"),
        ("admin", "backup"),
    ]


def test_an_owner_defined_in_the_policy_wins(project: Path, tmp_path: Path) -> None:
    policy = project / "policy.yaml"
    data = yaml.safe_load(policy.read_text())
    data["roles"]["owner"] = {"categories": ["*"], "actions": ["read"]}
    policy.write_text(yaml.safe_dump(data))
    result = run(project, "store", "backup", str(tmp_path / "bk"))
    assert result.exit_code == 2
    assert "'owner' may not backup" in result.output


def test_the_service_knows_no_built_in_owner(project: Path) -> None:
    with pytest.raises(AccessDenied, match="Got 'owner'"):
        Project.load(project).policy().require("owner", "read")
    assert "owner" in Project.load(project, local_owner=True).policy().roles
    key = run(project, "serve", "keys", "add", "crm", "--role", "owner")
    assert key.exit_code == 2
    assert "Got 'owner'" in key.output
    assert Project.load(project).api_keys().list_keys() == []
