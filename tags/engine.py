"""Evaluate the catalogue's rule and fact tags over a feature frame: ``evaluate_tags``.

One :class:`~tags.rules.EvalContext` is shared by every tag, so each feature column is
converted once and each event window is counted once however many rules use it. The
result is the long table of the tag contract (``tags.store_format.TAG_COLUMNS``).

Event windows are fastest from the :class:`features.events.PreparedEvents` the features
were built from (``prepare_events(customers, events).build_features(as_of)``): its
customer-sorted integer arrays are reused, instead of hashing every event's customer id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import union_categoricals

from features.events import PreparedEvents
from tags.catalogue import Catalogue, CompiledTag
from tags.errors import CatalogueError, RuleError, RuleEvalError, TagsError
from tags.rules import EvalContext, Scope, event_needs, frame_kinds, to_ns, truth
from tags.rules.context import AggregateInputs
from tags.rules.values import NULL, NUM, STR, Val
from tags.rules.windows import arrow_strings
from tags.store_format import TAG_COLUMNS

__all__ = [
    "TagValues",
    "case_values",
    "concat_tag_tables",
    "empty_tag_table",
    "evaluate_tag",
    "evaluate_tag_values",
    "evaluate_tags",
    "long_table",
    "scope_thresholds",
    "value_rows",
]


class TagValues:
    """The rows of one tag: frame row positions and the value of each.

    Attributes:
        tag_id: The tag.
        rows: Row positions in the feature frame (ascending).
        codes: Index into ``values`` for each row.
        values: The distinct values, as strings.
        thresholds: The population aggregates the rule used, by their text (e.g.
            ``median(recency_days)`` -> 21.0; NaN for an empty population), so a
            tagging run can record the numbers of its date.
    """

    def __init__(
        self,
        tag_id: str,
        rows: np.ndarray,
        codes: np.ndarray,
        values: list[str],
        thresholds: dict[str, float] | None = None,
    ):
        self.tag_id = tag_id
        self.rows = rows
        self.codes = codes
        self.values = values
        self.thresholds = thresholds or {}

    def counts(self) -> dict[str, int]:
        """Value -> number of customers (values with none are left out)."""
        tally = np.bincount(self.codes, minlength=len(self.values))
        return {v: int(c) for v, c in zip(self.values, tally, strict=True) if c}


def _mask(rule_value: object, n: int) -> np.ndarray:
    assert isinstance(rule_value, Val)
    if rule_value.kind == NULL:
        return np.zeros(n, dtype=bool)
    return truth(rule_value, n)


def scope_thresholds(*scopes: Scope) -> dict[str, float]:
    """Text -> value of the aggregates evaluated in ``scopes`` (see ``TagValues``)."""
    out: dict[str, float] = {}
    for scope in scopes:
        for (_func, column, width, text), value in scope.aggregates.items():
            if value.kind == NUM and value.is_scalar:
                out[text[column - 1 : column - 1 + width]] = float(value.data)
    return out


def evaluate_tag(compiled: CompiledTag, ctx: EvalContext) -> TagValues:
    """Evaluate one compiled tag over every row of ``ctx``.

    Raises:
        RuleError: Evaluation failed (unknown name, type mismatch, value outside the
            catalogue); the message names the tag and quotes the rule.
    """
    scopes: list[Scope] = []
    result = _evaluate_tag(compiled, ctx, scopes)
    result.thresholds = scope_thresholds(*scopes)
    return result


def _evaluate_tag(compiled: CompiledTag, ctx: EvalContext, scopes: list[Scope]) -> TagValues:
    tag = compiled.tag
    n = ctx.n
    population = None
    if compiled.scope is not None:
        outer = Scope(ctx, label=tag.id)
        scopes.append(outer)
        population = _mask(compiled.scope.evaluate(outer), n)
    scope = Scope(ctx, population=population, label=tag.id)
    scopes.append(scope)
    for name, rule in compiled.lets:
        scope.bindings[name] = rule.evaluate(scope)
    if compiled.when is not None:
        hit = _mask(compiled.when.evaluate(scope), n)
        rows = np.flatnonzero(hit if population is None else hit & population)
        return TagValues(tag.id, rows, np.zeros(len(rows), dtype=np.int64), ["true"])
    in_scope = population if population is not None else np.ones(n, dtype=bool)
    if compiled.cases:
        values = tag.value_ids if not tag.open_values else case_values(compiled)
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
    return value_rows(compiled, compiled.value.evaluate(scope), in_scope)


def value_rows(compiled: CompiledTag, result: Val, in_scope: np.ndarray) -> TagValues:
    """The rows of a tag whose value is an expression: ``result`` (its value over every
    row) where not null and in scope.

    Raises:
        RuleEvalError: The value is not a string per customer, or (unless the tag has
            open values) a value is not among the declared ones.
    """
    tag = compiled.tag
    assert compiled.value is not None
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


def case_values(compiled: CompiledTag) -> list[str]:
    """The values of an open-valued tag with cases: each case's, then ``else``'s."""
    seen: list[str] = []
    spec = compiled.tag.rule
    assert spec is not None
    for case in spec.cases:
        if case.value not in seen:
            seen.append(case.value)
    if spec.else_ is not None and spec.else_ not in seen:
        seen.append(spec.else_)
    return seen


def _categorical(codes: np.ndarray, categories: pd.Index | list[str]) -> pd.Categorical:
    """A categorical column from integer codes and (unique, string) categories."""
    dtype = pd.CategoricalDtype(pd.Index(categories, dtype="string"), ordered=False)
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def empty_tag_table() -> pd.DataFrame:
    """A long tag table with no rows and the contract's dtypes."""
    none = np.empty(0, dtype=np.int8)
    return pd.DataFrame(
        {
            "customer_id": _categorical(none, []),
            "tag_id": _categorical(none, []),
            "value": _categorical(none, []),
            "score": pd.Series([], dtype="float64"),
            "source": _categorical(none, ["rule"]),
            "version": _categorical(none, []),
            "as_of": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )


def evaluate_tags(
    features: pd.DataFrame,
    events: pd.DataFrame | PreparedEvents | None,
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
    tag_ids: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
) -> pd.DataFrame:
    """Evaluate active rule and fact tags for every customer of ``features``.

    Args:
        features: One row per customer, ``customer_id`` first (``build_features``).
        events: Canonical events (only those before ``as_of`` are read), or the
            :class:`~features.events.PreparedEvents` the features were built from (the
            fast path: no customer id is hashed). May be ``None`` when no rule uses
            event windows.
        catalogue: The tag catalogue. Model tags are skipped (models produce them).
        as_of: The evaluation time, recorded in every row.
        tag_ids: Evaluate only these tags (default: every active fact/rule tag).
        thresholds: Population aggregates (``median``, ``quantile``, ...) to use instead
            of computing them over ``features``: tag id -> aggregate text -> value, as
            ``TagValues.thresholds`` (real-time tagging pins the last batch run's).

    Returns:
        Long table with columns ``customer_id, tag_id, value, score, source, version,
        as_of``: boolean tags give a row (value ``"true"``) only where true,
        multi-valued tags exactly one row per customer in their scope; ``score`` is NaN
        and ``source`` is ``"rule"``; ``version`` is ``"<tag id>@<version>"``.
        Rows come tag by tag, in frame order within a tag. The string columns
        (``customer_id``, ``tag_id``, ``value``, ``source``, ``version``) are pandas
        categoricals whose categories are strings: they compare, group and convert
        (``astype(str)``, Arrow, DuckDB) like strings without a Python object per row.
        ``customer_id``'s categories are the frame's ids (customers without a tag row
        included); concatenate tables with :func:`concat_tag_tables`.

    Raises:
        TagsError: The frame has no unique ``customer_id`` column, or a rule fails
            (with the tag named and the rule quoted).
    """
    results = evaluate_tag_values(
        features, events, catalogue, as_of=as_of, tag_ids=tag_ids, thresholds=thresholds
    )
    return long_table(features, results, catalogue, as_of=as_of)


def _unique(ids: pd.Series) -> bool:
    """Whether ids are unique; a strictly increasing column (build_features sorts by id)
    is checked in one pass without hashing."""
    if _increasing(arrow_strings(ids)):
        return True
    return not bool(ids.duplicated().any())


def _increasing(strings: pa.Array) -> bool:
    """Whether strings are strictly increasing (one vectorised comparison)."""
    if len(strings) < 2:
        return True
    later, earlier = strings.slice(1), strings.slice(0, len(strings) - 1)
    return bool(pc.all(pc.greater(later, earlier)).as_py())


def evaluate_tag_values(
    features: pd.DataFrame,
    events: pd.DataFrame | PreparedEvents | None,
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
    tag_ids: Iterable[str] | None = None,
    thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    aggregate_inputs: AggregateInputs | None = None,
) -> list[TagValues]:
    """The rule-evaluation half of :func:`evaluate_tags`: rows and values per tag.

    ``thresholds`` pins population aggregates (as :func:`evaluate_tags`);
    ``aggregate_inputs`` collects what each aggregate is computed from (see
    :class:`~tags.rules.EvalContext`), for a partitioned run to unite.

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
    ctx = EvalContext(
        features,
        events=events,
        as_of=as_of,
        event_needs=needs,
        pinned=thresholds,
        aggregate_inputs=aggregate_inputs,
    )
    return [evaluate_tag(item, ctx) for item in compiled]


_STRING_COLUMNS = ("customer_id", "tag_id", "value", "source", "version")


def _as_categorical(column: pd.Series) -> Any:
    """A column as a categorical with string categories (as ``long_table`` makes)."""
    if isinstance(column.dtype, pd.CategoricalDtype) and column.cat.categories.dtype == "string":
        return column.array
    return pd.Categorical(column.astype("string"))


def concat_tag_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack long tag tables (e.g. rule tags and predicted tags) into one.

    String columns stay categorical (their categories united), where ``pd.concat`` would
    turn categoricals with different categories into one Python object per row.
    Plain string columns are accepted too.
    """
    if not tables:
        return empty_tag_table()
    columns = [c for c in TAG_COLUMNS if all(c in t.columns for t in tables)]
    out: dict[str, Any] = {}
    for name in columns:
        parts = [t[name] for t in tables]
        if name in _STRING_COLUMNS:
            out[name] = union_categoricals(
                [_as_categorical(p) for p in parts], sort_categories=True
            )
        else:
            out[name] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(out)


def _code_dtype(n_categories: int) -> type[np.signedinteger[Any]]:
    """The narrowest integer type for codes of ``n_categories`` (what pandas would pick)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _filled(parts: list[np.ndarray], dtype: Any, n: int) -> np.ndarray:
    """``parts`` one after another in one array of ``dtype`` (one pass, no int64 copy)."""
    out = np.empty(n, dtype=dtype)
    at = 0
    for part in parts:
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _sorted_labels(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """(new code of each label, the labels sorted)."""
    order = sorted(range(len(labels)), key=labels.__getitem__)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels), dtype=np.int64)
    return rank, [labels[i] for i in order]


def _customer_categories(ids: pd.Series) -> tuple[pd.Index, np.ndarray | None]:
    """The frame's ids sorted, and each row's rank among them (``None``: already sorted,
    as ``build_features`` leaves them)."""
    strings = arrow_strings(ids)
    if _increasing(strings):
        return pd.Index(strings, dtype="string"), None
    order = pc.sort_indices(strings).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return pd.Index(strings.take(order), dtype="string"), rank


def long_table(
    features: pd.DataFrame,
    results: list[TagValues],
    catalogue: Catalogue,
    *,
    as_of: pd.Timestamp | str,
) -> pd.DataFrame:
    """The contract's long table from per-tag results (the output half of ``evaluate_tags``).

    Built from integer codes: ``customer_id``, ``tag_id``, ``value``, ``source`` and
    ``version`` are categoricals whose categories are the strings (the frame's ids, the
    tags, their values), so no per-row Python string is made.
    """
    if not results or not sum(len(r.rows) for r in results):
        return empty_tag_table()
    sizes = np.array([len(r.rows) for r in results], dtype=np.int64)
    n = int(sizes.sum())
    # Categories in string order, so sorting a column sorts as its strings would.
    tag_rank, tag_labels = _sorted_labels([r.tag_id for r in results])
    version_rank, versions = _sorted_labels(
        [catalogue.get(r.tag_id).version_label for r in results]
    )
    tag_codes = np.repeat(tag_rank.astype(_code_dtype(len(tag_labels))), sizes)
    version_codes = np.repeat(version_rank.astype(_code_dtype(len(versions))), sizes)
    value_pos = {v: i for i, v in enumerate(sorted({v for r in results for v in r.values}))}
    value_type = _code_dtype(len(value_pos))
    value_codes = _filled(
        [np.array([value_pos[v] for v in r.values], dtype=value_type)[r.codes] for r in results],
        value_type,
        n,
    )
    ids, rank = _customer_categories(features["customer_id"])
    id_type = _code_dtype(len(ids))
    id_codes = _filled([r.rows if rank is None else rank[r.rows] for r in results], id_type, n)
    stamp = pd.Timestamp(as_of)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return pd.DataFrame(
        {
            "customer_id": _categorical(id_codes, ids),
            "tag_id": _categorical(tag_codes, tag_labels),
            "value": _categorical(value_codes, list(value_pos)),
            "score": pd.Series(np.full(n, np.nan), copy=False),
            "source": _categorical(np.zeros(n, dtype=np.int8), ["rule"]),
            "version": _categorical(version_codes, versions),
            # Filling int64 and viewing it is ~5x faster than np.full of a datetime64.
            "as_of": pd.Series(
                np.full(n, stamp.value // 1000, dtype=np.int64).view("datetime64[us]"),
                copy=False,
            ).dt.tz_localize("UTC"),
        },
        copy=False,  # fresh arrays: consolidating them into blocks would copy ~0.1 GB
    )
