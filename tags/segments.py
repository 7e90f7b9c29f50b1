"""Audiences: customers selected by combining tags, in the rule language.

An audience expression is a rule over a wide frame of one snapshot: one row per
customer, one column per tag it names (boolean tags are true/false, other tags hold
their value as a string, and ``<tag>_score`` holds a model tag's score), e.g.
``rfm_segment = 'important_value' and churn_risk in ('high', 'medium')``.
Selection goes through :class:`tags.access.TagReader`: naming a tag the caller's role
may not see is refused, and every selection is audited. Audiences can be saved by
name in a YAML file and re-run against any snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tags.errors import AudienceError
from tags.policy import tag_infos
from tags.rules import Rule, compile_rule

if TYPE_CHECKING:
    # Annotations only: saved audiences are read and listed without pandas or the tag
    # store (`tagsmith audience list` starts light); selection receives a reader.
    import pandas as pd

    from tags.access import TagReader

__all__ = ["Audience", "AudienceBook", "SavedAudience", "compile_audience", "select_audience"]

SCORE_SUFFIX = "_score"


@dataclass(frozen=True)
class Audience:
    """A selected audience.

    Attributes:
        expression: The expression that selected it.
        as_of: The snapshot it was selected from.
        tags: The tags the expression reads.
        customers: customer_id plus the tag columns the expression reads.
    """

    expression: str
    as_of: pd.Timestamp
    tags: list[str]
    customers: pd.DataFrame

    @property
    def size(self) -> int:
        """Number of customers selected."""
        return len(self.customers)


def _columns(definitions: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Column name -> (tag id, kind) for every tag in ``definitions``."""
    cols: dict[str, tuple[str, str]] = {}
    for tag_id, tag in definitions.items():
        kind = "bool" if getattr(tag, "value_type", "") == "boolean" else "str"
        cols[tag_id] = (tag_id, kind)
        if getattr(tag, "value_type", "") == "score" or getattr(tag, "source", "") == "model":
            cols[tag_id + SCORE_SUFFIX] = (tag_id, "num")
    return cols


def compile_audience(expression: str, catalogue: Any) -> tuple[Rule, list[str]]:
    """Parse and type-check an audience expression against the catalogue's tags.

    Returns:
        The compiled rule and the ids of the tags it reads.

    Raises:
        AudienceError: The expression is empty.
        RuleError: It does not parse, names an unknown tag (with suggestions), uses
            event functions, or is not a condition.
    """
    if not expression or not expression.strip():
        raise AudienceError("Expected an audience expression such as \"lifecycle = 'active'\".")
    cols = _columns({t.id: t for t in tag_infos(catalogue)})
    rule = compile_rule(
        expression,
        names={name: kind for name, (_, kind) in cols.items()},
        where="audience",
        expect="bool",
        allow_events=False,
        allow_aggregates=False,
    )
    tags = sorted({cols[name][0] for name in rule.name_set})
    return rule, tags


def select_audience(
    reader: TagReader,
    expression: str,
    *,
    as_of: Any = None,
    action: str = "audience",
) -> Audience:
    """Customers of the snapshot current at ``as_of`` for whom ``expression`` holds.

    Args:
        reader: The caller's governed reader (role, policy, audit log).
        expression: The audience expression.
        as_of: Snapshot date (default: newest).
        action: Policy action checked (``audience``; ``export`` when the selection
            leaves as a file).

    Raises:
        AccessDenied: The expression reads a tag the caller's role may not see.
        RuleError: The expression is invalid (see :func:`compile_audience`).
    """
    rule, tags = compile_audience(expression, reader.catalogue)
    query = expression if as_of is None else f"{expression} (as of {as_of})"
    reader.authorise("audience", tags, query)
    if action != "audience":
        reader.authorise(action, tags, query)
    definitions = {t.id: t for t in tag_infos(reader.catalogue) if t.id in tags}
    boolean = [t for t, d in definitions.items() if getattr(d, "value_type", "") == "boolean"]
    scored = sorted(
        {
            name[: -len(SCORE_SUFFIX)]
            for name in rule.name_set
            if name.endswith(SCORE_SUFFIX) and name[: -len(SCORE_SUFFIX)] in definitions
        }
    )
    store = reader.store
    snapshot_at = store.resolve_as_of(as_of)
    wide = store.wide(snapshot_at, tags=tags, boolean_tags=boolean, score_tags=scored)
    mask = rule.mask(wide)
    chosen = wide.loc[mask].reset_index(drop=True)
    reader.record(
        action,
        tags=tags,
        n_customers=len(chosen),
        query=query,
        extra={"as_of": f"{snapshot_at:%Y-%m-%d}", "universe": len(wide)},
    )
    return Audience(expression=expression, as_of=snapshot_at, tags=tags, customers=chosen)


class SavedAudience(BaseModel):
    """An audience saved by name.

    Attributes:
        expression: The audience expression.
        description: What it is for.
        created_by: Who saved it.
        created_at: When (UTC, ISO 8601).
    """

    model_config = ConfigDict(extra="forbid")

    expression: str
    description: str = ""
    created_by: str = ""
    created_at: str = ""


class _BookFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audiences: dict[str, SavedAudience] = Field(default_factory=dict)

    @field_validator("audiences")
    @classmethod
    def _names(cls, value: dict[str, SavedAudience]) -> dict[str, SavedAudience]:
        for name in value:
            _check_name(name)
        return value


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_" for c in name) or not name[0].isalpha():
        raise AudienceError(
            "Expected an audience name of letters, digits, '-' and '_' starting with a "
            f"letter. Got {name!r}."
        )


class AudienceBook:
    """Saved audiences in a YAML file (``audiences.yaml`` in the project).

    Args:
        path: The file (created on the first save).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> _BookFile:
        if not self.path.exists():
            return _BookFile()
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            return _BookFile.model_validate(data)
        except (yaml.YAMLError, ValidationError) as exc:
            raise AudienceError(f"{self.path} is not a valid audiences file: {exc}") from exc

    def _write(self, book: _BookFile) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        text = "# Saved audiences: tagsmith audience save NAME EXPR; tagsmith audience run NAME\n"
        text += yaml.safe_dump(book.model_dump(mode="json"), sort_keys=True, allow_unicode=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

    def list(self) -> dict[str, SavedAudience]:
        """Every saved audience by name."""
        return dict(sorted(self._read().audiences.items()))

    def get(self, name: str) -> SavedAudience:
        """The audience saved as ``name``.

        Raises:
            AudienceError: No such audience (the message lists the saved ones).
        """
        saved = self._read().audiences
        if name not in saved:
            raise AudienceError(
                f"Expected a saved audience name ({', '.join(sorted(saved)) or 'none saved'})."
                f" Got {name!r}."
            )
        return saved[name]

    def save(
        self,
        name: str,
        expression: str,
        catalogue: Any,
        *,
        description: str = "",
        actor: str = "",
        replace: bool = False,
    ) -> SavedAudience:
        """Check ``expression`` against the catalogue and save it as ``name``.

        Raises:
            AudienceError: The name is taken (without ``replace``) or malformed.
            RuleError: The expression is invalid.
        """
        _check_name(name)
        compile_audience(expression, catalogue)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30):
            book = self._read()
            if name in book.audiences and not replace:
                raise AudienceError(
                    f"Expected a new audience name. Got {name!r}, already saved as "
                    f"{book.audiences[name].expression!r} (pass --replace to overwrite)."
                )
            saved = SavedAudience(
                expression=expression,
                description=description,
                created_by=actor,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            book.audiences[name] = saved
            self._write(book)
        return saved

    def delete(self, name: str) -> None:
        """Remove a saved audience.

        Raises:
            AudienceError: No such audience.
        """
        self.get(name)
        with FileLock(str(self.path) + ".lock", timeout=30):
            book = self._read()
            book.audiences.pop(name, None)
            self._write(book)
