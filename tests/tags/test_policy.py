from __future__ import annotations

from pathlib import Path

import pytest

from tags.errors import AccessDenied, PolicyError
from tags.policy import AccessPolicy
from tests.tags.conftest import Tag


def test_default_policy_roles_see_what_they_should(catalogue: dict[str, Tag]) -> None:
    policy = AccessPolicy.default()
    everything = set(catalogue)
    assert policy.visible("executive", catalogue) == everything
    assert policy.visible("marketing", catalogue) == everything - {"age_band"}
    assert policy.visible("service", catalogue) == {"lifecycle", "rfm_segment", "old_customer"}
    assert "age_band" not in policy.visible("admin", catalogue)


def test_explicit_request_for_restricted_tag_is_refused(catalogue: dict[str, Tag]) -> None:
    policy = AccessPolicy.default()
    policy.check("executive", ["age_band", "lifecycle"], catalogue)
    with pytest.raises(
        AccessDenied, match=r"'marketing' may not read age_band \(attribute, restricted\)"
    ):
        policy.check("marketing", ["age_band", "lifecycle"], catalogue)
    with pytest.raises(AccessDenied, match="churn_risk"):
        policy.check("service", ["churn_risk"], catalogue)


def test_unknown_tags_and_roles_are_refused(catalogue: dict[str, Tag]) -> None:
    policy = AccessPolicy.default()
    with pytest.raises(AccessDenied, match="unknown"):
        policy.check("executive", ["no_such_tag"], catalogue)
    with pytest.raises(AccessDenied, match="Got 'intern'"):
        policy.visible("intern", catalogue)


def test_actions_are_granted_per_role() -> None:
    policy = AccessPolicy.default()
    policy.require("admin", "backup")
    with pytest.raises(
        AccessDenied, match=r"'marketing' may not backup. Roles that may: \['admin'\]"
    ):
        policy.require("marketing", "backup")
    with pytest.raises(AccessDenied, match="may not export"):
        policy.require("service", "export")


def test_allow_and_deny_lists_override_categories(catalogue: dict[str, Tag]) -> None:
    policy = AccessPolicy.from_yaml(
        """
roles:
  analyst:
    categories: [value]
    sensitivities: [public, internal]
    allow_tags: [age_band]
    deny_tags: [rfm_segment]
"""
    )
    assert policy.visible("analyst", catalogue) == {"age_band"}


def test_invalid_policy_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("roles:\n  x:\n    actions: [read, fly]\n    sensitivities: [secret]\n")
    with pytest.raises(
        PolicyError, match=r"policy.yaml is invalid: .*roles.x.sensitivities.0"
    ) as e:
        AccessPolicy.load(path)
    assert "fly" in str(e.value)
    with pytest.raises(PolicyError, match="no such file"):
        AccessPolicy.load(tmp_path / "missing.yaml")
