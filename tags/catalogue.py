"""The tag catalogue: governed tag definitions in YAML, validated and compiled.

A catalogue is a folder of ``*.yaml`` files, each holding ``tags: [...]``. Every tag
has a stable ASCII id, a display name in any language starting with its category's
prefix (``生命周期_阶段``, ``lifecycle_stage``), a category, description, owner,
source (fact, rule or model), value type, sensitivity, refresh schedule, status and
version. Rules are compiled when the catalogue loads, so a typo fails ``tagsmith tags
validate`` with the file, the tag, the rule and a caret, not a nightly run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tags.config import TagsConfig
from tags.errors import CatalogueError, RuleError, UnknownTagError
from tags.rules import Rule, compile_rule, suggest

__all__ = [
    "LIBRARY_DIR",
    "STATUSES",
    "Band",
    "Case",
    "Catalogue",
    "CompiledTag",
    "RuleSpec",
    "TagDefinition",
    "ValueDef",
    "copy_library",
    "normalise_name",
]

LIBRARY_DIR = Path(__file__).parent / "library"
STATUSES: tuple[str, ...] = ("draft", "active", "deprecated")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VALUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")


def normalise_name(name: str) -> str:
    """The form two names are compared in: NFKC (full -> half width), casefold, no spaces."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


class ValueDef(BaseModel):
    """One value of a multi-valued (ordinal) tag.

    Attributes:
        id: Stable ASCII value, as stored and served (e.g. ``important_value``).
        name: Display name in any language (e.g. ``重要价值客户 important value``).
        description: What the value means.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    description: str = ""

    @field_validator("id")
    @classmethod
    def _ascii_id(cls, value: str) -> str:
        if not _VALUE_ID.match(value):
            raise ValueError(
                "value ids are ASCII letters, digits and _ . + - (at most 64, not starting with "
                f"a symbol); got {value!r}"
            )
        return value


class Band(BaseModel):
    """A band of a score tag: the value for scores at or above ``min`` (last: the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    name: str = ""
    min: float | None = None


class Case(BaseModel):
    """One case of a multi-valued rule: ``value`` where ``when`` holds (first match wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    when: str


class RuleSpec(BaseModel):
    """How a rule or fact tag is computed.

    Exactly one form:

    * boolean tags: ``when`` (a condition);
    * ordinal tags: ``cases`` (ordered, first match wins) and ``else``; or ``value``, an
      expression whose string result is the value (fact tags such as ``age_band``).

    Attributes:
        scope: Who the tag applies to (default everyone). Customers outside get no row,
            and aggregates such as ``median(x)`` are computed over the scope only.
        let: Named helper expressions, usable in later ``let``, ``when`` and cases.
        when: Condition of a boolean tag.
        cases: Ordered cases of an ordinal tag.
        else_: Value for customers in scope that match no case (``else`` in YAML).
        value: Expression giving the value itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    scope: str | None = None
    let: dict[str, str] = Field(default_factory=dict)
    when: str | None = None
    cases: list[Case] = Field(default_factory=list)
    else_: str | None = Field(default=None, alias="else")
    value: str | None = None

    @field_validator("let")
    @classmethod
    def _let_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[a-z_][a-z0-9_]*$", name):
                raise ValueError(f"let names must be lower snake_case, got {name!r}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> RuleSpec:
        forms = [self.when is not None, bool(self.cases), self.value is not None]
        if sum(forms) != 1:
            raise ValueError(
                "a rule has exactly one of 'when' (boolean tag), 'cases' (+ 'else', ordinal "
                f"tag) or 'value' (value expression); got {sum(forms)}"
            )
        if self.else_ is not None and not self.cases:
            raise ValueError("'else' goes with 'cases'")
        return self

    def expressions(self) -> Iterator[tuple[str, str]]:
        """(part, text) of every expression, in evaluation order."""
        if self.scope is not None:
            yield "scope", self.scope
        for name, text in self.let.items():
            yield f"let '{name}'", text
        if self.when is not None:
            yield "when", self.when
        for i, case in enumerate(self.cases, start=1):
            yield f"case {i} ('{case.value}')", case.when
        if self.value is not None:
            yield "value", self.value


class TagDefinition(BaseModel):
    """One catalogued tag (see the module docstring and README for every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    display_name: str
    category: str
    description: str
    owner: str
    source: Literal["fact", "rule", "model"]
    value_type: Literal["boolean", "ordinal", "score"]
    values: list[ValueDef] = Field(default_factory=list)
    open_values: bool = False
    bands: list[Band] = Field(default_factory=list)
    score_range: tuple[float, float] | None = None
    model: str | None = None
    sensitivity: Literal["public", "internal", "restricted"] = "internal"
    refresh: Literal["hourly", "daily", "weekly", "monthly", "on_demand"] = "daily"
    status: Literal["draft", "active", "deprecated"] = "draft"
    version: int = Field(default=1, ge=1)
    rule: RuleSpec | None = None

    @field_validator("id")
    @classmethod
    def _ascii_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                f"tag ids are lower snake_case ASCII, at most 64 characters; got {value!r}"
            )
        return value

    @field_validator("display_name", "description", "owner")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("values", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("rule", mode="before")
    @classmethod
    def _plain_rule(cls, value: Any) -> Any:
        return {"when": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> TagDefinition:
        if self.source == "model":
            if self.rule is not None:
                raise ValueError("model tags are produced by a model: give 'model', not 'rule'")
            if not self.model:
                raise ValueError("model tags need 'model' (the registered model name)")
        elif self.rule is None:
            raise ValueError(f"{self.source} tags need a 'rule'")
        value_ids = [v.id for v in self.values]
        if len(set(value_ids)) != len(value_ids):
            raise ValueError(f"value ids must be unique; got {value_ids}")
        names = [normalise_name(v.name) for v in self.values if v.name]
        if len(set(names)) != len(names):
            raise ValueError("value display names must differ after normalisation")
        if self.value_type == "boolean":
            if self.values or self.bands or self.open_values:
                raise ValueError("boolean tags take no 'values', 'bands' or 'open_values'")
            if self.rule is not None and self.rule.when is None:
                raise ValueError("boolean tags need 'rule.when' (a condition)")
        elif self.value_type == "ordinal":
            if self.bands:
                raise ValueError("'bands' belong to score tags")
            if not self.values and not self.open_values:
                raise ValueError("ordinal tags need 'values' (or 'open_values: true')")
            rule = self.rule
            if rule is not None:
                if rule.when is not None:
                    raise ValueError("ordinal tags use 'rule.cases' or 'rule.value', not 'when'")
                if rule.cases and not self.open_values:
                    used = [c.value for c in rule.cases] + ([rule.else_] if rule.else_ else [])
                    unknown = [u for u in used if u not in value_ids]
                    if unknown:
                        raise ValueError(
                            f"case values {unknown} are not among the declared values {value_ids}"
                        )
        else:
            if self.source != "model":
                raise ValueError("score tags are produced by models (source: model)")
            if not self.bands:
                raise ValueError("score tags need 'bands' (value per score range)")
            mins = [b.min for b in self.bands]
            if any(m is None for m in mins[:-1]):
                raise ValueError("only the last band may omit 'min'")
            given = [m for m in mins if m is not None]
            if any(a <= b for a, b in itertools.pairwise(given)):
                raise ValueError(f"band 'min' values must strictly decrease; got {mins}")
            bands = [b.value for b in self.bands]
            if len(set(bands)) != len(bands):
                raise ValueError(f"band values must be unique; got {bands}")
        return self

    @property
    def value_ids(self) -> list[str]:
        """Values the tag may take, in order (``["true"]`` for boolean tags)."""
        if self.value_type == "boolean":
            return ["true"]
        if self.value_type == "score":
            return [b.value for b in self.bands]
        return [v.id for v in self.values]

    @property
    def version_label(self) -> str:
        """``id@version``, the version recorded with every value a rule emits."""
        return f"{self.id}@{self.version}"

    def band_of(self, scores: Iterable[float]) -> list[str | None]:
        """The band value of each score (``None`` for a missing score)."""
        out: list[str | None] = []
        for score in scores:
            if score is None or score != score:
                out.append(None)
                continue
            for band in self.bands:
                if band.min is None or score >= band.min:
                    out.append(band.value)
                    break
            else:
                out.append(None)
        return out

    def fingerprint(self) -> str:
        """sha256 of the definition (what ``plan`` compares)."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CompiledTag:
    """A tag definition with its rule expressions compiled.

    Attributes:
        tag: The definition.
        scope: Who the tag applies to (``None``: everyone).
        lets: Helper expressions, in order.
        when: Condition (boolean tags).
        cases: (value, condition) pairs, in order (ordinal tags).
        value: Value expression (ordinal tags from a column).
    """

    tag: TagDefinition
    scope: Rule | None = None
    lets: tuple[tuple[str, Rule], ...] = ()
    when: Rule | None = None
    cases: tuple[tuple[str, Rule], ...] = ()
    value: Rule | None = None

    def rules(self) -> Iterator[Rule]:
        """Every compiled expression of the tag."""
        if self.scope is not None:
            yield self.scope
        yield from (r for _, r in self.lets)
        if self.when is not None:
            yield self.when
        yield from (r for _, r in self.cases)
        if self.value is not None:
            yield self.value

    def check(self, kinds: Mapping[str, str]) -> None:
        """Type-check every expression against column kinds (see ``frame_kinds``).

        Raises:
            RuleError: A name is unknown or types do not fit; the message names the tag.
        """
        available = dict(kinds)
        if self.scope is not None:
            self.scope.check_types(available, expect="bool")
        for name, rule in self.lets:
            available[name] = rule.check_types(available)
        for rule in ([self.when] if self.when else []) + [r for _, r in self.cases]:
            rule.check_types(available, expect="bool")
        if self.value is not None:
            self.value.check_types(available, expect="str")


def compile_tag(
    tag: TagDefinition, *, where: str, event_types: Iterable[str] | None
) -> CompiledTag:
    """Compile a tag's rule expressions (syntax, functions, event types).

    Raises:
        RuleError: An expression does not compile; the message names ``where``.
    """
    if tag.rule is None:
        return CompiledTag(tag)
    spec = tag.rule
    kinds = list(event_types) if event_types is not None else None

    def one(part: str, text: str) -> Rule:
        return compile_rule(text, event_types=kinds, where=f"{where}, {part}")

    scope = one("scope", spec.scope) if spec.scope is not None else None
    lets = tuple((name, one(f"let '{name}'", text)) for name, text in spec.let.items())
    when = one("when", spec.when) if spec.when is not None else None
    cases = tuple(
        (case.value, one(f"case {i} ('{case.value}')", case.when))
        for i, case in enumerate(spec.cases, start=1)
    )
    value = one("value", spec.value) if spec.value is not None else None
    return CompiledTag(tag, scope=scope, lets=lets, when=when, cases=cases, value=value)


def _format_validation(exc: ValidationError, where: str) -> str:
    lines = [f"{where} is invalid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<tag>"
        if err["type"] == "extra_forbidden":
            lines.append(f"  key '{key}': not a known field (check the spelling).")
        elif err["type"] == "missing":
            lines.append(f"  key '{key}': required, got nothing.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_text = "" if isinstance(got, dict) else f" Got {got!r}."
            lines.append(f"  key '{key}': {msg}.{got_text}")
    return "\n".join(lines)


@dataclass
class Catalogue:
    """A validated set of tag definitions, with compiled rules.

    Attributes:
        tags: Tag id -> definition, in file order.
        files: Tag id -> the file it came from (``None`` when built in memory).
        config: The categories and prefixes the names were checked against.
    """

    tags: dict[str, TagDefinition]
    files: dict[str, Path | None] = field(default_factory=dict)
    config: TagsConfig = field(default_factory=TagsConfig)
    event_types: tuple[str, ...] | None = None
    _compiled: dict[str, CompiledTag] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        directory: Path,
        config: TagsConfig | None = None,
        *,
        event_types: Iterable[str] | None = None,
    ) -> Catalogue:
        """Load and validate every ``*.yaml`` file of ``directory`` (sorted by name).

        Args:
            directory: The catalogue folder.
            config: Categories and prefixes (default: the built-in ones).
            event_types: Event types rules may count (default: any).

        Raises:
            CatalogueError: A file is unreadable or invalid, a name breaks the naming
                rules, or a rule does not compile; the message names file and tag.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise CatalogueError(
                f"Expected a catalogue folder at {directory}. Got no such folder "
                "(run 'tagsmith init', or copy YAML tag files there)."
            )
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
        entries: list[tuple[TagDefinition, Path | None]] = []
        for path in paths:
            entries.extend((tag, path) for tag in _read_file(path))
        return cls.from_definitions(entries, config, event_types=event_types)

    @classmethod
    def from_definitions(
        cls,
        entries: Iterable[TagDefinition | tuple[TagDefinition, Path | None]],
        config: TagsConfig | None = None,
        *,
        event_types: Iterable[str] | None = None,
    ) -> Catalogue:
        """Build a catalogue from definitions (optionally paired with their files).

        Raises:
            CatalogueError: Naming rules are broken or a rule does not compile.
        """
        config = config or TagsConfig()
        tags: dict[str, TagDefinition] = {}
        files: dict[str, Path | None] = {}
        seen_names: dict[str, str] = {}
        categories = config.categories
        for entry in entries:
            tag, path = entry if isinstance(entry, tuple) else (entry, None)
            where = f"{path}: tag '{tag.id}'" if path else f"tag '{tag.id}'"
            if tag.id in tags:
                other = files.get(tag.id)
                raise CatalogueError(
                    f"{where}: tag ids must be unique. Got '{tag.id}' again "
                    f"(first defined in {other or 'an earlier entry'})."
                )
            if tag.category not in categories:
                raise CatalogueError(
                    f"{where}: expected a category among {sorted(categories)}. Got "
                    f"'{tag.category}' instead.{suggest(tag.category, categories)} "
                    "(declare new categories under tags.extra_categories in tagsmith.yaml)"
                )
            prefixes = categories[tag.category]
            norm = normalise_name(tag.display_name)
            if not any(norm.startswith(normalise_name(p)) for p in prefixes):
                raise CatalogueError(
                    f"{where}: the display name must start with a prefix of category "
                    f"'{tag.category}' ({' or '.join(repr(p) for p in prefixes)}). "
                    f"Got {tag.display_name!r} instead."
                )
            if norm in seen_names:
                raise CatalogueError(
                    f"{where}: display name {tag.display_name!r} duplicates tag "
                    f"'{seen_names[norm]}' ({tags[seen_names[norm]].display_name!r}) once case, "
                    "full/half width and spaces are normalised. Merge them or rename one."
                )
            seen_names[norm] = tag.id
            tags[tag.id] = tag
            files[tag.id] = path
        catalogue = cls(
            tags=tags,
            files=files,
            config=config,
            event_types=tuple(event_types) if event_types is not None else None,
        )
        for tag_id in tags:
            catalogue.compiled(tag_id)
        return catalogue

    def where(self, tag_id: str) -> str:
        """'FILE: tag 'id'' for messages."""
        path = self.files.get(tag_id)
        return f"{path}: tag '{tag_id}'" if path else f"tag '{tag_id}'"

    def compiled(self, tag_id: str) -> CompiledTag:
        """The tag with its rules compiled (cached).

        Raises:
            CatalogueError: A rule does not compile (wraps the :class:`RuleError`).
        """
        if tag_id not in self._compiled:
            tag = self.get(tag_id)
            try:
                self._compiled[tag_id] = compile_tag(
                    tag, where=self.where(tag_id), event_types=self.event_types
                )
            except RuleError as exc:
                raise CatalogueError(str(exc)) from exc
        return self._compiled[tag_id]

    def get(self, tag_id: str) -> TagDefinition:
        """The tag called ``tag_id``.

        Raises:
            UnknownTagError: No such tag (with close matches).
        """
        try:
            return self.tags[tag_id]
        except KeyError:
            raise UnknownTagError(
                f"Expected a tag id from the catalogue. Got '{tag_id}'.{suggest(tag_id, self.tags)}"
            ) from None

    def __contains__(self, tag_id: object) -> bool:
        return tag_id in self.tags

    def __iter__(self) -> Iterator[TagDefinition]:
        return iter(self.tags.values())

    def __len__(self) -> int:
        return len(self.tags)

    def active(self, *, sources: Iterable[str] = ("fact", "rule", "model")) -> list[TagDefinition]:
        """Active tags of the given sources, in catalogue order."""
        wanted = set(sources)
        return [t for t in self.tags.values() if t.status == "active" and t.source in wanted]

    def by_category(self, category: str) -> list[TagDefinition]:
        """Tags of one category.

        Raises:
            CatalogueError: The category is not declared.
        """
        if category not in self.config.categories:
            raise CatalogueError(
                f"Expected a category among {sorted(self.config.categories)}. Got "
                f"'{category}'.{suggest(category, self.config.categories)}"
            )
        return [t for t in self.tags.values() if t.category == category]

    def check(self, kinds: Mapping[str, str]) -> None:
        """Type-check every active rule against column kinds (e.g. the feature frame's).

        Raises:
            CatalogueError: A rule reads an unknown name or mixes types.
        """
        for tag in self.active(sources=("fact", "rule")):
            try:
                self.compiled(tag.id).check(kinds)
            except RuleError as exc:
                raise CatalogueError(str(exc)) from exc

    def fingerprint(self) -> str:
        """sha256 over every definition (order-independent)."""
        digest = hashlib.sha256()
        for tag_id in sorted(self.tags):
            digest.update(f"{tag_id}={self.tags[tag_id].fingerprint()}\n".encode())
        return digest.hexdigest()


def _read_file(path: Path) -> list[TagDefinition]:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) != {"tags"} or not isinstance(data["tags"], list):
        raise CatalogueError(
            f"{path} must hold one key, 'tags', with a list of tag definitions. "
            f"Got {type(data).__name__ if not isinstance(data, dict) else sorted(data)} instead."
        )
    out = []
    for i, raw in enumerate(data["tags"], start=1):
        tag_name = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        where = f"{path}: tag '{tag_name}' (entry {i})"
        if not isinstance(raw, dict):
            raise CatalogueError(f"{where} must be a mapping of fields. Got {raw!r}.")
        try:
            out.append(TagDefinition.model_validate(raw))
        except ValidationError as exc:
            raise CatalogueError(_format_validation(exc, where)) from exc
    return out


def copy_library(target: Path, *, source: Path = LIBRARY_DIR) -> list[Path]:
    """Copy the standard tag library's YAML files into ``target`` (existing files kept).

    Returns:
        The files written.
    """
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.yaml")):
        dest = target / path.name
        if dest.exists():
            continue
        tmp = dest.with_suffix(".yaml.tmp")
        tmp.write_bytes(path.read_bytes())
        tmp.replace(dest)
        written.append(dest)
    return written


__all__ += ["compile_tag"]
