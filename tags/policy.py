"""Access policy: which tags each role may see and which actions it may take.

``policy.yaml`` maps role names to the tag categories and sensitivities they see (plus
explicit allow and deny lists) and the actions they may take. Anything not granted is
refused: a tag outside the catalogue is visible to nobody, and a role that is not in
the file can do nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tags.errors import AccessDenied, PolicyError

__all__ = [
    "ACTIONS",
    "OWNER",
    "AccessConfig",
    "AccessPolicy",
    "RolePolicy",
    "TagInfo",
    "default_policy_text",
    "tag_infos",
    "write_default_policy",
]

Sensitivity = Literal["public", "internal", "restricted"]
SENSITIVITIES: tuple[str, ...] = ("public", "internal", "restricted")

# read: snapshots, history, diffs and reports; export: files leave the system;
# audience: select customers; run: write tag snapshots; audit: read/verify the audit
# log; backup / restore: the project's stores; catalogue: change tag definitions;
# promote / rollback: move a model's champion alias (the web console checks them);
# write_events: send behaviour events to real-time tagging (POST /events);
# erase: erase a customer everywhere on request (``tagsmith customers erase``);
# consent: import customers' consent records (``tagsmith customers consent import``);
# review: sign off a new version of a review-required tag (``tagsmith tags review``).
ACTIONS: tuple[str, ...] = (
    "read",
    "export",
    "audience",
    "run",
    "audit",
    "backup",
    "restore",
    "catalogue",
    "promote",
    "rollback",
    "write_events",
    "erase",
    "consent",
    "review",
)
ALL = "*"
# The local CLI acts as this role when nobody names one (see AccessConfig.cli_roles).
OWNER = "owner"


class TagInfo(Protocol):
    """What the policy needs of a tag definition (``tags.definitions.TagDefinition``)."""

    @property
    def id(self) -> str: ...

    @property
    def category(self) -> str: ...

    @property
    def sensitivity(self) -> str: ...


class AccessConfig(BaseModel):
    """``access:`` section of ``tagsmith.yaml``.

    Attributes:
        cli_roles: When false (the default) a local project is owned by whoever runs
            the CLI: a command given neither ``--role`` nor ``TAGSMITH_ROLE`` acts as
            :data:`OWNER` (every action, every tag), audited under the OS user. When
            true the project opts in to CLI roles: such a command acts as
            ``default_role`` instead and ``owner`` exists only if ``policy.yaml``
            defines it. The HTTP service ignores this: its role comes from the API key.
        default_role: Role of a CLI caller who gives neither ``--role`` nor
            ``TAGSMITH_ROLE`` when ``cli_roles`` is true.
    """

    model_config = ConfigDict(extra="forbid")

    cli_roles: bool = False
    default_role: str = "marketing"


def _public_only() -> list[Sensitivity]:
    return ["public"]


class RolePolicy(BaseModel):
    """What one role may see and do.

    Attributes:
        description: Who holds the role.
        categories: Tag categories it sees (``"*"``: every category).
        sensitivities: Sensitivity levels it sees.
        allow_tags: Tags it sees whatever their category and sensitivity.
        deny_tags: Tags it never sees (wins over everything else).
        actions: What it may do (see :data:`ACTIONS`).
    """

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    categories: list[str] = Field(default_factory=list)
    sensitivities: list[Sensitivity] = Field(default_factory=_public_only)
    allow_tags: list[str] = Field(default_factory=list)
    deny_tags: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=lambda: ["read"])

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ACTIONS))
        if unknown:
            raise ValueError(f"expected actions among {list(ACTIONS)}, got unknown {unknown}")
        return value

    def sees(self, tag: TagInfo) -> bool:
        """True when this role may see ``tag``."""
        if tag.id in self.deny_tags:
            return False
        if tag.id in self.allow_tags:
            return True
        in_category = ALL in self.categories or tag.category in self.categories
        return in_category and tag.sensitivity in self.sensitivities


class AccessPolicy(BaseModel):
    """The whole of ``policy.yaml``.

    Attributes:
        roles: Role name -> what it may see and do.
    """

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, RolePolicy]

    @classmethod
    def load(cls, path: Path) -> AccessPolicy:
        """Read and validate a policy file.

        Raises:
            PolicyError: The file is missing, not YAML, or breaks the schema.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PolicyError(
                f"Expected an access policy at {path}. Got no such file: 'tagsmith init' "
                "writes the default one."
            ) from exc
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "policy") -> AccessPolicy:
        """Parse policy YAML (``source`` names it in errors)."""
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise PolicyError(
                f"{source} must hold a mapping with a 'roles' key. "
                f"Got {type(data).__name__} instead."
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"key '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()
            )
            raise PolicyError(f"{source} is invalid: {problems}") from exc

    @classmethod
    def default(cls) -> AccessPolicy:
        """The policy ``tagsmith init`` writes."""
        return cls.from_yaml(default_policy_text(), source="the default policy")

    def with_owner(self) -> AccessPolicy:
        """This policy plus the built-in :data:`OWNER` role (every tag, every action).

        A role named ``owner`` in ``policy.yaml`` wins: a project that narrows its owner
        keeps that narrower definition.
        """
        if OWNER in self.roles:
            return self
        owner = RolePolicy(
            description="Whoever runs the CLI on their own local project.",
            categories=[ALL],
            sensitivities=list(SENSITIVITIES),  # type: ignore[arg-type]
            actions=list(ACTIONS),
        )
        return AccessPolicy(roles={**self.roles, OWNER: owner})

    def role(self, name: str) -> RolePolicy:
        """The policy of role ``name``.

        Raises:
            AccessDenied: No such role (an unknown role may do nothing).
        """
        try:
            return self.roles[name]
        except KeyError:
            raise AccessDenied(
                f"Expected a role defined in the access policy ({', '.join(sorted(self.roles))})."
                f" Got {name!r}: pass --role or set TAGSMITH_ROLE."
            ) from None

    def visible(self, role: str, catalogue: Any) -> set[str]:
        """Ids of the catalogue's tags that ``role`` may see."""
        rp = self.role(role)
        return {t.id for t in tag_infos(catalogue) if rp.sees(t)}

    def check(self, role: str, requested: Collection[str], catalogue: Any) -> None:
        """Refuse unless ``role`` may see every tag in ``requested``.

        Raises:
            AccessDenied: Names the tags refused and why (unknown tags are refused too,
                so a typo cannot pass as "nothing to hide").
        """
        rp = self.role(role)
        known = {t.id: t for t in tag_infos(catalogue)}
        unknown = sorted(set(requested) - set(known))
        if unknown:
            raise AccessDenied(
                f"Expected tag ids from the catalogue. Got unknown {unknown} "
                "('tagsmith catalogue list' shows the ids)."
            )
        refused = sorted(t for t in set(requested) if not rp.sees(known[t]))
        if refused:
            why = ", ".join(f"{t} ({known[t].category}, {known[t].sensitivity})" for t in refused)
            raise AccessDenied(
                f"Role {role!r} may not read {why}. It sees categories "
                f"{rp.categories or 'none'} at sensitivity {rp.sensitivities}; ask for a role "
                "that allows these tags."
            )

    def require(self, role: str, action: str) -> None:
        """Refuse unless ``role`` may take ``action``.

        Raises:
            AccessDenied: The role lacks the action (the message names roles that have it).
        """
        if action not in ACTIONS:
            raise PolicyError(f"Expected an action among {list(ACTIONS)}. Got {action!r}.")
        rp = self.role(role)
        if action not in rp.actions:
            holders = sorted(r for r, p in self.roles.items() if action in p.actions)
            raise AccessDenied(
                f"Role {role!r} may not {action}. Roles that may: {holders or 'none'}."
            )


def tag_infos(catalogue: Any) -> list[TagInfo]:
    """The tag definitions of ``catalogue`` (a Catalogue, a mapping or an iterable)."""
    if isinstance(catalogue, Mapping):
        return list(catalogue.values())
    tags = getattr(catalogue, "tags", None)
    if tags is not None:
        return list(tags.values()) if isinstance(tags, Mapping) else list(tags)
    if isinstance(catalogue, Iterable):
        return list(catalogue)
    raise TypeError(f"Expected a catalogue of tag definitions. Got {type(catalogue).__name__}.")


def default_policy_text() -> str:
    """Text of the shipped default ``policy.yaml``."""
    return resources.files("tags").joinpath("policy_default.yaml").read_text(encoding="utf-8")


def write_default_policy(path: Path) -> bool:
    """Write the default policy to ``path`` unless a file is there; True if written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(default_policy_text(), encoding="utf-8")
    tmp.replace(path)
    return True
