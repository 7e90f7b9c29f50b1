"""The tag catalogue: governed tag definitions (:mod:`tags.definitions`) in YAML,
validated and compiled.

A catalogue is a folder of ``*.yaml`` files, each holding ``tags: [...]``. Every tag
has a stable ASCII id, a display name in any language starting with its category's
prefix (``生命周期_阶段``, ``lifecycle_stage``), a category, description, owner,
source (fact, rule or model), value type, sensitivity, refresh schedule, status and
version. Rules are compiled when the catalogue loads, so a typo fails ``tagsmith tags
validate`` with the file, the tag, the rule and a caret, not a nightly run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tags.config import TagsConfig
from tags.definitions import TagDefinition, normalise_name
from tags.errors import CatalogueError, RuleError, UnknownTagError
from tags.rules import Rule, compile_rule, suggest

__all__ = [
    "LIBRARY_DIR",
    "Catalogue",
    "CompiledTag",
    "compile_tag",
    "copy_library",
]

LIBRARY_DIR = Path(__file__).parent / "library"


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
    # Column kinds this tag type-checked against: a live scorer checks the same
    # frame layout on every call, and the check costs more than the evaluation.
    _checked: set[frozenset[tuple[str, str]]] = field(
        default_factory=set, compare=False, repr=False
    )

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
        key = frozenset(kinds.items())
        if key in self._checked:
            return
        available = dict(kinds)
        if self.scope is not None:
            self.scope.check_types(available, expect="bool")
        for name, rule in self.lets:
            available[name] = rule.check_types(available)
        for rule in ([self.when] if self.when else []) + [r for _, r in self.cases]:
            rule.check_types(available, expect="bool")
        if self.value is not None:
            self.value.check_types(available, expect="str")
        self._checked.add(key)


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
