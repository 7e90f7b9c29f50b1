"""Rule and fact tags over feature arrays: the live path's evaluator (no frame).

:class:`ArrayRules` takes a catalogue's active rule and fact tags once, with their
rules parsed and compiled once by the catalogue (``Catalogue.compiled``: rule text is
parsed into a syntax tree and interpreted over vectorised values, never executed as
code), type-checks them once against the feature kinds, and then evaluates them for
each call over a dict of feature arrays and the event index the features were built
from. Every tag goes through :func:`tags.engine.evaluate_tag`, the batch engine's own
per-tag evaluation, so tag values are those of ``evaluate_tags`` on the same features.

A call of at most :data:`ROW_LIMIT` rows (``POST /score``'s one customer, a small
real-time micro-batch) runs each tag's rules as closures compiled from the same trees
(:mod:`tags.rule_rows`, the same values), row by row: at a few rows the interpreter's
fixed cost per node, not the work, is what a call pays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.events import PreparedEvents
from features.families.base import Coded
from features.small_events import category_strings
from tags.catalogue import Catalogue, CompiledTag
from tags.engine import TagValues, evaluate_tag
from tags.errors import CatalogueError, RuleError, TagsError
from tags.rule_rows import RowEnv, RowTag, row_tag
from tags.rules.context import EvalContext
from tags.rules.prepared import PreparedEventIndex
from tags.rules.values import Val, from_codes, from_numpy, kind_of_dtype

__all__ = ["ArrayRules", "rule_value"]


def rule_value(values: Any) -> Val:
    """One feature column (numpy array, :class:`Coded` category codes, or Arrow text)
    as a rule value: what the frame's column converts to in the batch engine."""
    if isinstance(values, Coded):
        return from_codes(values.codes, category_strings(values.categories))
    if isinstance(values, np.ndarray):
        return from_numpy(values)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        # Codes in first-appearance order, null -1: what from_series's factorize gives
        # for the frame's text column. Arrow's hash kernel numbers distinct values in
        # the same order; a few rows (a /score call) skip the kernel call, many (a live
        # micro-batch's customers) skip a Python loop over every row.
        if len(values) > _FEW_ROWS and _is_text(values.type):
            array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
            encoded = pc.dictionary_encode(array)
            found = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            return from_codes(np.asarray(found, dtype=np.int64), encoded.dictionary.to_pylist())
        position: dict[str, int] = {}
        codes = [
            -1 if v is None else position.setdefault(v, len(position)) for v in values.to_pylist()
        ]
        return from_codes(np.array(codes, dtype=np.int64), list(position))
    raise TagsError(f"Expected a feature array. Got {type(values).__name__}.")


# Above this many rows a text column is coded by an Arrow kernel, not a Python loop.
_FEW_ROWS = 64
# Up to this many rows a call runs the rules' closures row by row (tags.rule_rows);
# above it, the vectorised interpreter.
ROW_LIMIT = 8


def _is_float32(dtype: Any) -> bool:
    """Whether a feature dtype is float32 (rules keep its precision)."""
    return isinstance(dtype, np.dtype) and dtype == np.float32


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


class ArrayRules:
    """The catalogue's rule and fact tags, compiled and type-checked once.

    Args:
        catalogue: The tag catalogue (model tags are skipped).
        kinds: Feature name -> pandas dtype of its column (``customer_id`` included):
            the kinds the rules are checked against.
        tag_ids: Evaluate only these tags (default: every active fact/rule tag).

    A rule that does not type-check is reported when :meth:`evaluate` is called, as
    ``evaluate_tags`` reports it, so a scorer built at start-up never fails to start.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        kinds: Mapping[str, Any],
        tag_ids: Iterable[str] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self._kinds = {name: kind_of_dtype(dtype) for name, dtype in kinds.items()}
        self._row_kinds = {
            name: (kind, _is_float32(kinds[name])) for name, kind in self._kinds.items()
        }
        self._tags: dict[tuple[str, ...] | None, list[CompiledTag]] = {}
        self._rows: dict[tuple[str, ...] | None, list[RowTag | None]] = {}
        self._problems: dict[tuple[str, ...] | None, Exception] = {}
        self._default = None if tag_ids is None else tuple(tag_ids)

    def compiled(self, tag_ids: Iterable[str] | None = None) -> list[CompiledTag]:
        """The compiled tags to evaluate (checked once per selection).

        Raises:
            TagsError: A named tag is a model tag or unknown; a rule does not type-check.
        """
        key = self._default if tag_ids is None else tuple(tag_ids)
        if key in self._problems:
            raise self._problems[key]
        found = self._tags.get(key)
        if found is None:
            try:
                found = self._check(key)
            except TagsError as exc:
                self._problems[key] = exc
                raise
            self._tags[key] = found
        return found

    def _check(self, key: tuple[str, ...] | None) -> list[CompiledTag]:
        if key is None:
            tags = self.catalogue.active(sources=("fact", "rule"))
        else:
            tags = [self.catalogue.get(t) for t in key]
            model_tags = [t.id for t in tags if t.source == "model"]
            if model_tags:
                raise TagsError(f"Tags {model_tags} are produced by models, not by rules.")
        compiled = [self.catalogue.compiled(t.id) for t in tags]
        for item in compiled:
            try:
                item.check(self._kinds)
            except RuleError as exc:
                raise CatalogueError(str(exc)) from exc
        return compiled

    def evaluate(
        self,
        columns: Mapping[str, Any],
        n: int,
        prepared: PreparedEvents,
        codes: np.ndarray,
        *,
        as_of: pd.Timestamp,
        tag_ids: Iterable[str] | None = None,
        thresholds: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> list[TagValues]:
        """Rows and values per tag of ``n`` customers.

        Args:
            columns: Feature name -> the ``n`` customers' values (``cutoff_columns``).
            n: Number of customers (rows).
            prepared: The event index the features were built from.
            codes: Each row's customer code in ``prepared``.
            as_of: The evaluation time (UTC).
            tag_ids: Evaluate only these tags (default: the scorer's selection).
            thresholds: Population aggregates to use instead of computing them over
                these rows (tag id -> aggregate text -> value, as a batch run records).

        Raises:
            TagsError: A rule fails (the tag named and the rule quoted).
        """
        compiled = self.compiled(tag_ids)
        index = PreparedEventIndex(prepared, codes, int(as_of.value), codes=codes)
        ctx = _ArrayContext(n, columns, index, as_of=as_of, pinned=thresholds)
        if n > ROW_LIMIT:
            return [evaluate_tag(item, ctx) for item in compiled]
        env = RowEnv(n, columns, ctx, prepared, codes)
        out = []
        for item, rows in zip(compiled, self._row_tags(tag_ids, compiled), strict=True):
            found = rows.evaluate(env) if rows is not None else None
            out.append(found if found is not None else evaluate_tag(item, ctx))
        return out

    def _row_tags(
        self, tag_ids: Iterable[str] | None, compiled: list[CompiledTag]
    ) -> list[RowTag | None]:
        """The selection's tags as closures (``None``: left to the interpreter), compiled
        once per selection; a benign race between threads compiles twice."""
        key = self._default if tag_ids is None else tuple(tag_ids)
        found = self._rows.get(key)
        if found is None:
            found = self._rows[key] = [row_tag(item, self._row_kinds) for item in compiled]
        return found


_NO_FRAME = pd.DataFrame()


class _ArrayContext(EvalContext):
    """An evaluation context over feature arrays: a column is converted to a rule
    value when a rule first reads it (as the frame-based context converts columns)."""

    def __init__(
        self,
        n: int,
        columns: Mapping[str, Any],
        index: PreparedEventIndex,
        *,
        as_of: pd.Timestamp,
        pinned: Mapping[str, Mapping[str, float | None]] | None,
    ) -> None:
        super().__init__(_NO_FRAME, as_of=as_of, pinned=pinned)
        self.n = n
        self._arrays = columns
        self._event_index = index

    @property
    def names(self) -> list[str]:
        """Every column name this context can resolve."""
        return sorted(set(self._columns) | set(self._arrays))

    def column(self, name: str) -> Val | None:
        """The feature ``name`` as a rule value (``None`` if absent)."""
        found = self._columns.get(name)
        if found is None:
            values = self._arrays.get(name)
            if values is None:
                return None
            found = self._columns[name] = rule_value(values)
        return found
