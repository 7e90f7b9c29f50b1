"""Catalogue versions: what changed since the last applied catalogue, and applying it.

``plan`` compares the catalogue files with the last applied version and lists added,
removed and changed tags, refusing what governance forbids: status moves other than
draft -> active -> deprecated, removing an active tag (deprecate it first), and
changing a definition without raising its version. ``apply`` records the catalogue as
a new numbered version (JSON, written atomically) so tag values can always be traced to
the exact definitions that produced them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tags.catalogue import Catalogue
from tags.definitions import TagDefinition
from tags.errors import CatalogueError

__all__ = ["ALLOWED_TRANSITIONS", "CatalogueHistory", "CataloguePlan", "TagChange"]

ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("draft", "draft"),
        ("draft", "active"),
        ("active", "active"),
        ("active", "deprecated"),
        ("deprecated", "deprecated"),
    }
)
_FILE = re.compile(r"^v(\d{4,})\.json$")


@dataclass(frozen=True)
class TagChange:
    """One tag's change against the last applied catalogue.

    Attributes:
        tag_id: The tag.
        kind: ``added``, ``removed`` or ``changed``.
        fields: Top-level fields that differ (``changed`` only).
        before: Status and version before (``None`` for added tags).
        after: Status and version after (``None`` for removed tags).
    """

    tag_id: str
    kind: str
    fields: tuple[str, ...] = ()
    before: tuple[str, int] | None = None
    after: tuple[str, int] | None = None

    def describe(self) -> str:
        """One line for ``tagsmith tags plan``."""
        if self.kind == "added":
            assert self.after is not None
            return f"+ {self.tag_id} (new, {self.after[0]}, v{self.after[1]})"
        if self.kind == "removed":
            assert self.before is not None
            return f"- {self.tag_id} (removed; was {self.before[0]}, v{self.before[1]})"
        assert self.before is not None
        assert self.after is not None
        status = f"{self.before[0]} -> {self.after[0]}" if self.before[0] != self.after[0] else ""
        version = (
            f"v{self.before[1]} -> v{self.after[1]}" if self.before[1] != self.after[1] else ""
        )
        moved = ", ".join(x for x in (status, version) if x)
        return f"~ {self.tag_id} ({moved or 'same version'}): {', '.join(self.fields)}"


@dataclass
class CataloguePlan:
    """What ``apply`` would record.

    Attributes:
        base_version: The last applied version (``None``: nothing applied yet).
        changes: Per-tag changes.
        problems: Why ``apply`` would be refused (empty: it may proceed).
    """

    base_version: int | None
    changes: list[TagChange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether the catalogue equals the last applied one."""
        return not self.changes


def _definition(tag: TagDefinition) -> dict[str, Any]:
    return tag.as_record()


class CatalogueHistory:
    """Applied catalogue versions in a folder (``v0001.json``, ``v0002.json``, ...)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def versions(self) -> list[int]:
        """Applied version numbers, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def load(self, version: int | None = None) -> dict[str, Any] | None:
        """An applied version's record (default: the latest; ``None`` if none applied).

        Raises:
            CatalogueError: The version does not exist or its file is unreadable.
        """
        versions = self.versions()
        if not versions:
            if version is None:
                return None
            raise CatalogueError(f"Expected catalogue version {version}. Got none applied yet.")
        version = versions[-1] if version is None else version
        if version not in versions:
            raise CatalogueError(
                f"Expected one of the applied catalogue versions {versions}. Got {version}."
            )
        path = self.directory / f"v{version:04d}.json"
        try:
            record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"{path}: cannot read the catalogue version: {exc}") from exc
        return record

    def plan(
        self, catalogue: Catalogue, *, approvals: Mapping[str, str] | None = None
    ) -> CataloguePlan:
        """Compare ``catalogue`` with the last applied version.

        Args:
            catalogue: The catalogue to apply.
            approvals: Tag id -> approved fingerprint (``tags.review``): a changed tag
                with ``review: required`` needs its current fingerprint approved.
        """
        last = self.load()
        before: dict[str, dict[str, Any]] = last["tags"] if last else {}
        plan = CataloguePlan(base_version=last["version"] if last else None)
        for tag in catalogue:
            after = _definition(tag)
            old = before.get(tag.id)
            if old is None:
                plan.changes.append(TagChange(tag.id, "added", after=(tag.status, tag.version)))
                if tag.status == "deprecated":
                    plan.problems.append(
                        f"tag '{tag.id}' is new but deprecated: new tags start as draft or active."
                    )
                continue
            if old == after:
                continue
            fields = tuple(sorted(k for k in set(old) | set(after) if old.get(k) != after.get(k)))
            change = TagChange(
                tag.id,
                "changed",
                fields=fields,
                before=(old["status"], int(old["version"])),
                after=(tag.status, tag.version),
            )
            plan.changes.append(change)
            needs_review = tag.review == "required" and tag.status != "deprecated"
            if needs_review and (approvals or {}).get(tag.id) != tag.fingerprint():
                plan.problems.append(
                    f"tag '{tag.id}' needs a reviewer's sign-off of this definition (review: "
                    f"required): run 'tagsmith tags review {tag.id}' and approve it. Got none."
                )
            if (old["status"], tag.status) not in ALLOWED_TRANSITIONS:
                plan.problems.append(
                    f"tag '{tag.id}': status may only move draft -> active -> deprecated. "
                    f"Got {old['status']} -> {tag.status}."
                )
            definition_fields = [f for f in fields if f not in ("status", "version")]
            if tag.version < int(old["version"]):
                plan.problems.append(
                    f"tag '{tag.id}': the version must not go down. Got v{old['version']} -> "
                    f"v{tag.version}."
                )
            elif definition_fields and tag.version == int(old["version"]):
                plan.problems.append(
                    f"tag '{tag.id}': {', '.join(definition_fields)} changed, so the version "
                    f"must go up (expected version {tag.version + 1}). Got version "
                    f"{tag.version} again."
                )
        for tag_id, old in before.items():
            if tag_id in catalogue:
                continue
            plan.changes.append(
                TagChange(tag_id, "removed", before=(old["status"], int(old["version"])))
            )
            if old["status"] == "active":
                plan.problems.append(
                    f"tag '{tag_id}' is active: deprecate it (status: deprecated) and apply "
                    "before removing it."
                )
        return plan

    def apply(
        self,
        catalogue: Catalogue,
        *,
        applied_at: datetime,
        applied_by: str = "",
        approvals: Mapping[str, str] | None = None,
    ) -> int:
        """Record ``catalogue`` as a new version and return its number.

        Nothing is written when the catalogue equals the last applied version (its
        number is returned).

        Raises:
            CatalogueError: The plan has problems (listed in the message).
        """
        plan = self.plan(catalogue, approvals=approvals)
        if plan.problems:
            raise CatalogueError(
                "The catalogue cannot be applied:\n" + "\n".join(f"  {p}" for p in plan.problems)
            )
        if plan.empty and plan.base_version is not None:
            return plan.base_version
        version = (plan.base_version or 0) + 1
        record = {
            "version": version,
            "applied_at": applied_at.isoformat(),
            "applied_by": applied_by,
            "fingerprint": catalogue.fingerprint(),
            "changes": [c.describe() for c in plan.changes],
            "tags": {tag.id: _definition(tag) for tag in catalogue},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"v{version:04d}.json"
        if path.exists():
            raise CatalogueError(f"{path} already exists: another apply ran at the same time.")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        return version
