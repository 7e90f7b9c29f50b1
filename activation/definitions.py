"""Triggers, audience syncs and destinations: governed YAML definitions and their checks.

A project keeps them in ``triggers/*.yaml``; each file may hold ``destinations:``,
``triggers:`` and ``syncs:`` lists (names are unique per kind over all files):

* a **destination** is where deliveries go: a ``webhook`` (signed JSON batches, with
  retries, dead letters and a rate limit) or a ``file`` folder (CSV or Parquet drops,
  for audience syncs);
* a **trigger** fires when a customer enters (``on_enter``) or leaves (``on_exit``) the
  audience an expression describes, judged on the transitions recorded in the tag store,
  and sends the customer id, the change, the ``include``-d tag values and ``as_of``;
* an **audience sync** sends a saved audience to a destination: the full list first,
  then only who was added and removed.

Triggers and syncs act for a policy ``role``: the tags they read (their expression and
``include``) must all be visible to it, and it must hold the ``audience`` and ``export``
actions (data leaves the system). Every item declares a ``purpose`` (e.g.
``marketing``); a trigger or sync must share its destination's purpose. Consent per
purpose is enforced by the governance layer, not here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from activation.errors import DefinitionError
from tags.errors import AccessDenied, RuleError
from tags.policy import AccessPolicy, tag_infos
from tags.segments import SCORE_SUFFIX, compile_audience

__all__ = [
    "KINDS",
    "REQUIRED_ACTIONS",
    "AudienceSync",
    "CheckResult",
    "Definitions",
    "Destination",
    "FileDestination",
    "Trigger",
    "WebhookDestination",
    "check_definitions",
    "check_expression",
    "load_definitions",
    "trigger_tags",
]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
KINDS: tuple[str, ...] = ("destinations", "triggers", "syncs")
# Data leaves the system: the acting role must be allowed to select and to export.
REQUIRED_ACTIONS: tuple[str, ...] = ("audience", "export")
STATUSES: tuple[str, ...] = ("draft", "active", "paused", "deprecated")


class _Governed(BaseModel):
    """Fields every definition carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    owner: str
    purpose: str
    version: int = Field(default=1, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "names are lower-case ASCII letters, digits, '_' and '-', starting with a "
                f"letter, at most 64 characters; got {value!r}"
            )
        return value

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str) -> str:
        if not _PURPOSE.match(value):
            raise ValueError(
                f"a purpose is a lower snake_case word such as 'marketing'; got {value!r}"
            )
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class WebhookDestination(_Governed):
    """An HTTP(S) endpoint receiving signed JSON batches.

    Attributes:
        url: Where batches are POSTed.
        secret_env: Environment variable holding the HMAC secret (never stored in the
            project). Without one, batches go unsigned and ``plan`` warns.
        batch_size: Events per request.
        timeout_s: Per-request timeout (connect, read and write).
        max_attempts: Attempts before a batch becomes a dead letter.
        backoff_base_s: First retry delay; doubled per attempt, with jitter.
        backoff_max_s: Longest retry delay.
        retry_after_max_s: Longest ``Retry-After`` honoured.
        rate_limit_per_s: Events per second at most (None: unlimited).
        concurrency: Requests in flight to this destination at once. Delivery order is
            not guaranteed (a batch waiting for a retry does not hold back later ones);
            each event carries its ``as_of``.
    """

    type: Literal["webhook"]
    url: str
    secret_env: str | None = None
    batch_size: int = Field(default=100, ge=1, le=1000)
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    backoff_max_s: float = Field(default=600.0, gt=0.0, le=86400.0)
    retry_after_max_s: float = Field(default=3600.0, ge=0.0, le=86400.0)
    rate_limit_per_s: float | None = Field(default=None, gt=0.0)
    concurrency: int = Field(default=1, ge=1, le=16)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host; got {value!r}")
        if parts.username or parts.password:
            raise ValueError("credentials do not belong in the URL: use secret_env")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError(f"expected an environment variable name; got {value!r}")
        return value


class FileDestination(_Governed):
    """A folder receiving list files (audience syncs): a full file, then change files.

    Attributes:
        path: The folder (relative paths are relative to the project).
        format: ``csv`` or ``parquet``.
    """

    type: Literal["file"]
    path: str
    format: Literal["csv", "parquet"] = "csv"


Destination = Annotated[WebhookDestination | FileDestination, Field(discriminator="type")]


class _Acting(_Governed):
    role: str
    status: Literal["draft", "active", "paused", "deprecated"] = "draft"
    include: list[str] = Field(default_factory=list)
    destination: str

    @field_validator("include")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"tags are listed twice in {value}")
        return value


class Trigger(_Acting):
    """Fires when a customer enters or leaves the audience ``on_enter`` / ``on_exit`` names.

    Attributes:
        on_enter: Fire when this expression becomes true for a customer.
        on_exit: Fire when it stops being true (exactly one of the two).
        include: Tag values sent with each event (as of the transition).
    """

    on_enter: str | None = None
    on_exit: str | None = None

    @model_validator(mode="after")
    def _one_expression(self) -> Trigger:
        if (self.on_enter is None) == (self.on_exit is None):
            raise ValueError("a trigger has exactly one of 'on_enter' and 'on_exit'")
        return self

    @property
    def expression(self) -> str:
        """The audience expression."""
        return self.on_enter if self.on_enter is not None else str(self.on_exit)

    @property
    def change(self) -> str:
        """``entered`` or ``left``: the membership change it fires on."""
        return "entered" if self.on_enter is not None else "left"


class AudienceSync(_Acting):
    """Keeps a destination's copy of a saved audience in step.

    Attributes:
        audience: Name of a saved audience (``audiences.yaml``); its expression is
            pinned when the sync is applied.
        include: Tag values sent with each member.
        min_interval_s: At most one sync per this many seconds (0: after every new
            snapshot).
    """

    audience: str
    min_interval_s: float = Field(default=0.0, ge=0.0, le=7 * 86400.0)


_MODELS: dict[str, Any] = {
    "destinations": Destination,
    "triggers": Trigger,
    "syncs": AudienceSync,
}


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destinations: list[dict[str, Any]] = Field(default_factory=list)
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    syncs: list[dict[str, Any]] = Field(default_factory=list)


@dataclass
class Definitions:
    """Every destination, trigger and sync of a project, by name.

    Attributes:
        destinations: Name -> destination.
        triggers: Name -> trigger.
        syncs: Name -> audience sync.
        files: (kind, name) -> the file it was read from.
    """

    destinations: dict[str, WebhookDestination | FileDestination] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    syncs: dict[str, AudienceSync] = field(default_factory=dict)
    files: dict[tuple[str, str], str] = field(default_factory=dict)

    def kind(self, kind: str) -> dict[str, Any]:
        """The items of one kind (``destinations``, ``triggers`` or ``syncs``)."""
        items: dict[str, Any] = getattr(self, kind)
        return items

    def where(self, kind: str, name: str) -> str:
        """'FILE: KIND NAME' for messages."""
        single = kind[:-1]
        path = self.files.get((kind, name))
        return f"{path}: {single} '{name}'" if path else f"{single} '{name}'"

    def items(self) -> Iterator[tuple[str, str, Any]]:
        """(kind, name, definition) of everything."""
        for kind in KINDS:
            for name, item in sorted(self.kind(kind).items()):
                yield kind, name, item

    def to_json(self) -> dict[str, dict[str, Any]]:
        """Plain JSON of every definition (as recorded by ``apply``)."""
        return {
            kind: {name: item.model_dump(mode="json") for name, item in sorted(items.items())}
            for kind in KINDS
            for items in [self.kind(kind)]
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, Any]]) -> Definitions:
        """Rebuild definitions recorded by :meth:`to_json`."""
        out = cls()
        for kind in KINDS:
            for name, raw in (data.get(kind) or {}).items():
                out.kind(kind)[name] = _parse(kind, raw)
        return out

    def fingerprint(self) -> str:
        """sha256 of the definitions' JSON."""
        text = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse(kind: str, raw: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(_MODELS[kind]).validate_python(raw)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"key '{'.'.join(str(p) for p in e['loc'] if not str(p).startswith('function-'))}': "
        f"{e['msg']}"
        for e in exc.errors()
    )


def load_definitions(folder: Path) -> Definitions:
    """Read every ``*.yaml`` / ``*.yml`` file of ``folder`` (missing folder: nothing).

    Raises:
        DefinitionError: A file is not YAML, breaks the schema, or repeats a name; the
            message names the file, the item and the key.
    """
    defs = Definitions()
    folder = Path(folder)
    if not folder.is_dir():
        return defs
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DefinitionError(f"{path}: not readable YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise DefinitionError(
                f"{path}: expected a mapping with 'destinations', 'triggers' and/or 'syncs'. "
                f"Got {type(data).__name__}."
            )
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            raise DefinitionError(f"{path}: {_problems(exc)}") from exc
        for kind in KINDS:
            for i, raw in enumerate(getattr(parsed, kind), start=1):
                label = raw.get("name", f"#{i}") if isinstance(raw, dict) else f"#{i}"
                try:
                    item = _parse(kind, raw)
                except ValidationError as exc:
                    raise DefinitionError(
                        f"{path}: {kind[:-1]} '{label}': {_problems(exc)}"
                    ) from exc
                items = defs.kind(kind)
                if item.name in items:
                    raise DefinitionError(
                        f"{path}: {kind[:-1]} '{item.name}' is defined twice (also in "
                        f"{defs.files[(kind, item.name)]}). Expected unique names."
                    )
                items[item.name] = item
                defs.files[(kind, item.name)] = str(path)
    return defs


def trigger_tags(expression: str, catalogue: Any) -> tuple[list[str], list[str]]:
    """(tags the expression reads, score columns it reads) of an audience expression.

    Raises:
        RuleError: The expression does not compile against the catalogue.
    """
    rule, tags = compile_audience(expression, catalogue)
    scores = sorted(n for n in rule.name_set if n.endswith(SCORE_SUFFIX) and n not in tags)
    return tags, scores


@dataclass
class CheckResult:
    """Problems refuse ``apply``; warnings are shown but do not.

    Attributes:
        problems: Why the definitions cannot be applied.
        warnings: What deserves a look (unsigned webhooks, unset secrets).
        pinned: Sync name -> the saved audience expression it would pin.
    """

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)


def _check_role(
    where: str, role: str, tags: list[str], policy: AccessPolicy, catalogue: Any
) -> list[str]:
    out = []
    try:
        rp = policy.role(role)
    except AccessDenied as exc:
        return [f"{where}: {exc}"]
    missing = [a for a in REQUIRED_ACTIONS if a not in rp.actions]
    if missing:
        out.append(
            f"{where}: role {role!r} lacks the action(s) {missing}; a trigger or sync acts "
            f"for a role holding {list(REQUIRED_ACTIONS)} (data leaves the system)."
        )
    try:
        policy.check(role, tags, catalogue)
    except AccessDenied as exc:
        out.append(f"{where}: {exc}")
    return out


def _check_acting(
    kind: str,
    item: Trigger | AudienceSync,
    defs: Definitions,
    policy: AccessPolicy,
    catalogue: Any,
    expression: str | None,
    result: CheckResult,
) -> None:
    where = defs.where(kind, item.name)
    known = {t.id for t in tag_infos(catalogue)}
    unknown = [t for t in item.include if t not in known]
    if unknown:
        result.problems.append(f"{where}: include names unknown tags {unknown}.")
    read: list[str] = [t for t in item.include if t in known]
    if expression is not None:
        try:
            tags, scores = trigger_tags(expression, catalogue)
        except RuleError as exc:
            result.problems.append(str(exc.located(where)))
            tags, scores = [], []
        if scores and kind == "triggers":
            result.problems.append(
                f"{where}: the expression reads scores {scores}. Triggers fire on recorded "
                "tag transitions, which are value changes: compare a value or band instead "
                "(e.g. churn_risk = 'high'), or catalogue a rule tag at the threshold."
            )
        read = sorted(set(read) | set(tags))
    dest = defs.destinations.get(item.destination)
    if dest is None:
        result.problems.append(
            f"{where}: destination {item.destination!r} is not defined "
            f"(defined: {sorted(defs.destinations) or 'none'})."
        )
    else:
        if kind == "triggers" and dest.type != "webhook":
            result.problems.append(
                f"{where}: triggers deliver events to webhook destinations; "
                f"{item.destination!r} is a {dest.type} destination (use it for syncs)."
            )
        if dest.purpose != item.purpose:
            result.problems.append(
                f"{where}: purpose {item.purpose!r} differs from destination "
                f"{item.destination!r}'s purpose {dest.purpose!r}; expected the same purpose."
            )
    result.problems.extend(_check_role(where, item.role, read, policy, catalogue))


def check_definitions(
    defs: Definitions,
    *,
    catalogue: Any,
    policy: AccessPolicy,
    audiences: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> CheckResult:
    """Cross-check definitions against the catalogue, the policy and saved audiences.

    Args:
        defs: The definitions.
        catalogue: The tag catalogue.
        policy: The access policy (role bounds).
        audiences: Saved audience name -> expression.
        environ: Environment to look secrets up in, for warnings only (None: skip).
    """
    result = CheckResult()
    for trigger in defs.triggers.values():
        _check_acting("triggers", trigger, defs, policy, catalogue, trigger.expression, result)
    for name, sync in defs.syncs.items():
        expression = audiences.get(sync.audience)
        if expression is None:
            result.problems.append(
                f"{defs.where('syncs', name)}: saved audience {sync.audience!r} does not exist "
                f"(saved: {sorted(audiences) or 'none'})."
            )
        else:
            result.pinned[name] = expression
        _check_acting("syncs", sync, defs, policy, catalogue, expression, result)
    for name, dest in defs.destinations.items():
        if dest.type != "webhook":
            continue
        where = defs.where("destinations", name)
        if dest.secret_env is None:
            result.warnings.append(f"{where}: no secret_env, so its batches are not signed.")
        elif environ is not None and not environ.get(dest.secret_env):
            result.warnings.append(
                f"{where}: environment variable {dest.secret_env} is not set here; the "
                "dispatcher needs it to sign batches."
            )
    return result


def check_expression(expression: str, catalogue: Any) -> list[str]:
    """Tags a trigger expression reads (raises like :func:`trigger_tags`, and on scores).

    Raises:
        DefinitionError: The expression reads scores.
        RuleError: It does not compile.
    """
    tags, scores = trigger_tags(expression, catalogue)
    if scores:
        raise DefinitionError(
            f"Expected a trigger expression over tag values. Got one reading scores {scores}: "
            "triggers fire on value transitions (use a band, e.g. churn_risk = 'high')."
        )
    return tags
