"""Evaluate the catalogue's rule and fact tags over a feature frame: ``evaluate_tags``.

One :class:`~tags.rules.EvalContext` is shared by every tag, so each feature column is
converted once and each event window is counted once however many rules use it. The
result is the long table of the tag contract (see ``TAG_COLUMNS``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tags.catalogue import Catalogue, CompiledTag
from tags.errors import CatalogueError, RuleError, RuleEvalError, TagsError
from tags.rules import EvalContext, Scope, event_needs, frame_kinds, to_ns, truth
from tags.rules.evaluate import arrow_strings
from tags.rules.values import NULL, STR

__all__ = [
    "TAG_COLUMNS",
    "TagValues",
    "empty_tag_table",
    "evaluate_tag",
    "evaluate_tag_values",
    "evaluate_tags",
    "long_table",
]

TAG_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "tag_id",
    "value",
    "score",
    "source",
    "version",
    "as_of",
)


class TagValues:
    """The rows of one tag: frame row positions and the value of each.

    Attributes:
        tag_id: The tag.
        rows: Row positions in the feature frame (ascending).
        codes: Index into ``values`` for each row.
        values: The distinct values, as strings.
    """

    def __init__(self, tag_id: str, rows: np.ndarray, codes: np.ndarray, values: list[str]):
        self.tag_id = tag_id
        self.rows = rows
        self.codes = codes
        self.values = values

    def counts(self) -> dict[str, int]:
        """Value -> number of customers (values with none are left out)."""
        tally = np.bincount(self.codes, minlength=len(self.values))
        return {v: int(c) for v, c in zip(self.values, tally, strict=True) if c}


def _mask(rule_value: object, n: int) -> np.ndarray:
    from tags.rules.values import Val

    assert isinstance(rule_value, Val)
    if rule_value.kind == NULL:
        return np.zeros(n, dtype=bool)
    return truth(rule_value, n)


def evaluate_tag(compiled: CompiledTag, ctx: EvalContext) -> TagValues:
    """Evaluate one compiled tag over every row of ``ctx``.

    Raises:
        RuleError: Evaluation failed (unknown name, type mismatch, value outside the
            catalogue); the message names the tag and quotes the rule.
    """
    tag = compiled.tag
    n = ctx.n
    population = None
    if compiled.scope is not None:
        population = _mask(compiled.scope.evaluate(Scope(ctx)), n)
    scope = Scope(ctx, population=population)
    for name, rule in compiled.lets:
        scope.bindings[name] = rule.evaluate(scope)
    if compiled.when is not None:
        hit = _mask(compiled.when.evaluate(scope), n)
        rows = np.flatnonzero(hit if population is None else hit & population)
        return TagValues(tag.id, rows, np.zeros(len(rows), dtype=np.int64), ["true"])
    in_scope = population if population is not None else np.ones(n, dtype=bool)
    if compiled.cases:
        values = tag.value_ids if not tag.open_values else _case_values(compiled)
        position = {v: i for i, v in enumerate(values)}
        codes = np.full(n, -1, dtype=np.int64)
        open_rows = in_scope.copy()
        for value, rule in compiled.cases:
            hit = _mask(rule.evaluate(scope), n) & open_rows
            codes[hit] = position[value]
            open_rows &= ~hit
        else_value = tag.rule.else_ if tag.rule is not None else None
        if else_value is not None:
            codes[open_rows] = position[else_value]
        rows = np.flatnonzero(codes >= 0)
        return TagValues(tag.id, rows, codes[rows], values)
    assert compiled.value is not None
    result = compiled.value.evaluate(scope)
    if result.kind == NULL:
        return TagValues(tag.id, np.empty(0, np.int64), np.empty(0, np.int64), [])
    if result.kind != STR or result.is_scalar:
        raise RuleEvalError(
            f"Expected the value expression to give a string per customer. Got {result.kind}.",
            text=compiled.value.text,
            where=compiled.value.where,
        )
    assert result.cats is not None
    codes = np.asarray(result.data)
    keep = (codes >= 0) & in_scope
    rows = np.flatnonzero(keep)
    found = [str(c) for c in result.cats]
    if not tag.open_values:
        used = np.unique(codes[rows])
        outside = sorted({found[i] for i in used} - set(tag.value_ids))
        if outside:
            raise RuleEvalError(
                f"Expected values among {tag.value_ids}. Got {outside[:5]} "
                "(declare them under 'values', or set 'open_values: true').",
                text=compiled.value.text,
                where=compiled.value.where,
            )
    return TagValues(tag.id, rows, codes[rows], found)


def _case_values(compiled: CompiledTag) -> list[str]:
    seen: list[str] = []
    spec = compiled.tag.rule
    assert spec is not None
    for case in spec.cases:
        if case.value not in seen:
            seen.append(case.value)
    if spec.else_ is not None and spec.else_ not in seen:
        seen.append(spec.else_)
    return seen


def empty_tag_table() -> pd.DataFrame:
    """A long tag table with no rows and the contract's dtypes."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="string"),
            "tag_id": pd.Series([], dtype="string"),
            "value": pd.Series([], dtype="string"),
            "score": pd.Series([], dtype="float64"),
            "source": pd.Series([], dtype="string"),
            "version": pd.Series([], dtype="string"),
            "as_of": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )


def _labels(codes: np.ndarray, labels: list[str]) -> pd.Series:
    """Strings from codes: one Arrow take on the (short) label array."""
    taken = pa.array(labels, type=pa.large_string()).take(pa.array(codes))
    return pd.Series(pd.arrays.ArrowStringArray(taken))


def evaluate_tags(
    features: pd.DataFrame,
    events: pd.DataFrame | None,
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
    tag_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Evaluate active rule and fact tags for every customer of ``features``.

    Args:
        features: One row per customer, ``customer_id`` first (``build_features``).
        events: Canonical events; only those before ``as_of`` are read. May be
            ``None`` when no rule uses event windows.
        catalogue: The tag catalogue. Model tags are skipped (models produce them).
        as_of: The evaluation time, recorded in every row.
        tag_ids: Evaluate only these tags (default: every active fact/rule tag).

    Returns:
        Long table with columns ``customer_id, tag_id, value, score, source, version,
        as_of``: boolean tags give a row (value ``"true"``) only where true,
        multi-valued tags exactly one row per customer in their scope; ``score`` is NaN
        and ``source`` is ``"rule"``; ``version`` is ``"<tag id>@<version>"``.

    Raises:
        TagsError: The frame has no unique ``customer_id`` column, or a rule fails
            (with the tag named and the rule quoted).
    """
    results = evaluate_tag_values(features, events, catalogue, as_of=as_of, tag_ids=tag_ids)
    return long_table(features, results, catalogue, as_of=as_of)


def _unique(ids: pd.Series) -> bool:
    """Whether ids are unique; a strictly increasing column (build_features sorts by id)
    is checked in one pass without hashing."""
    strings = arrow_strings(ids)
    if len(strings) < 2:
        return True
    increasing = pc.all(pc.greater(strings.slice(1), strings.slice(0, len(strings) - 1)))
    if increasing.as_py():
        return True
    return not bool(ids.duplicated().any())


def evaluate_tag_values(
    features: pd.DataFrame,
    events: pd.DataFrame | None,
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
    tag_ids: Iterable[str] | None = None,
) -> list[TagValues]:
    """The rule-evaluation half of :func:`evaluate_tags`: rows and values per tag.

    Raises:
        TagsError: As :func:`evaluate_tags`.
    """
    if "customer_id" not in features.columns:
        raise TagsError(
            "Expected a feature frame with a 'customer_id' column. "
            f"Got {list(features.columns)[:8]}."
        )
    if not _unique(features["customer_id"]):
        raise TagsError("Expected one feature row per customer. Got duplicate customer_id values.")
    if tag_ids is None:
        tags = catalogue.active(sources=("fact", "rule"))
    else:
        tags = [catalogue.get(t) for t in tag_ids]
        model_tags = [t.id for t in tags if t.source == "model"]
        if model_tags:
            raise TagsError(f"Tags {model_tags} are produced by models, not by rules.")
    compiled = [catalogue.compiled(t.id) for t in tags]
    kinds = frame_kinds(features)
    for item in compiled:
        try:
            item.check(kinds)
        except RuleError as exc:
            raise CatalogueError(str(exc)) from exc
    as_of_ns = to_ns(as_of)
    needs = event_needs([r for c in compiled for r in c.rules()], as_of_ns)
    if needs and events is None:
        users = [c.tag.id for c in compiled if any(r.event_calls for r in c.rules())]
        raise TagsError(f"Tags {users} count raw events, but no events were given.")
    ctx = EvalContext(features, events=events, as_of=as_of, event_needs=needs)
    return [evaluate_tag(item, ctx) for item in compiled]


def long_table(
    features: pd.DataFrame,
    results: list[TagValues],
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
) -> pd.DataFrame:
    """The contract's long table from per-tag results (the output half of ``evaluate_tags``)."""
    if not results or not sum(len(r.rows) for r in results):
        return empty_tag_table()
    rows = np.concatenate([r.rows for r in results])
    tag_codes = np.concatenate(
        [np.full(len(r.rows), i, dtype=np.int64) for i, r in enumerate(results)]
    )
    value_labels: list[str] = []
    offsets = []
    for r in results:
        offsets.append(len(value_labels))
        value_labels.extend(r.values)
    value_codes = np.concatenate([r.codes + off for r, off in zip(results, offsets, strict=True)])
    tag_labels = [r.tag_id for r in results]
    versions = [catalogue.get(r.tag_id).version_label for r in results]
    ids = arrow_strings(features["customer_id"]).take(pa.array(rows))
    stamp = pd.Timestamp(as_of)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    n = len(rows)
    out = pd.DataFrame(
        {
            "customer_id": pd.Series(pd.arrays.ArrowStringArray(ids)),
            "tag_id": _labels(tag_codes, tag_labels),
            "value": _labels(value_codes, value_labels),
            "score": pd.Series(np.full(n, np.nan), copy=False),
            "source": _labels(np.zeros(n, dtype=np.int64), ["rule"]),
            "version": _labels(tag_codes, versions),
            # Filling int64 and viewing it is ~5x faster than np.full of a datetime64.
            "as_of": pd.Series(
                np.full(n, stamp.value // 1000, dtype=np.int64).view("datetime64[us]"),
                copy=False,
            ).dt.tz_localize("UTC"),
        }
    )
    return out
