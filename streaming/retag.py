"""The re-tag of a micro-batch's customers over arrays: no DataFrame per batch.

Real-time tagging re-tags the customers a micro-batch touched with the batch code
restricted to them. :class:`ArrayRetag` runs the live scoring path on the customers'
stored facts, handed over as Arrow tables by the tagger's index
(:class:`streaming.index.CustomerFacts`):

1. the customers' rows and events become the arrays of
   :class:`features.small_events.SmallEvents` (the event index ``/score`` builds);
2. every feature at the cutoff, by the batch feature families
   (:func:`features.cutoffs.cutoff_columns`);
3. the catalogue's rule and fact tags over the feature arrays, with the batch
   engine's per-tag evaluation (:class:`tags.rule_arrays.ArrayRules`) and the
   thresholds of the latest batch run;
4. each champion scored once on a matrix built from the arrays
   (:func:`scoring.contract.columns_matrix`); a predictor without a model contract
   gets the feature frame and its ``predict_tags``, as in a batch run;
5. the values land straight in the live write's grid (:class:`tags.live.LiveGrid`),
   one entry per (customer, tag): no long table, no merge.

The same kernels as ``evaluate_tags``/``build_features`` compute every value (the
parity tests of ``scoring.live`` and ``tests/streaming`` hold both paths equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.catalog import feature_catalog
from features.cutoffs import cutoff_columns, normalize_as_of
from features.schema import FactsConfig
from features.small_events import CustomerArrays, EventColumns, SmallEvents
from features.spec import FeatureSpec
from scoring.batch import Predictor
from scoring.contract import ModelContract, columns_matrix, matrix_plan
from streaming.index import event_arrays, micros
from tags.catalogue import Catalogue
from tags.errors import TagStoreError
from tags.live import LiveGrid
from tags.rule_arrays import ArrayRules

__all__ = ["ArrayRetag", "customer_arrays_of", "event_columns_of"]

_TEXT = pa.large_string()


def customer_arrays_of(table: pa.Table, facts: FactsConfig) -> CustomerArrays:
    """Stored customer rows (canonical columns) as the live path's arrays."""
    n = table.num_rows
    ids = [str(c) for c in table["customer_id"].to_pylist()]
    attributes: dict[str, Any] = {}
    dtypes: dict[str, Any] = {}
    for spec in facts.attributes:
        dtypes[spec.name] = spec.dtype
        column = table[spec.name] if spec.name in table.column_names else pa.nulls(n)
        if spec.type == "date":
            attributes[spec.name] = micros(column.cast(pa.timestamp("us", tz="UTC")))
        elif spec.type in ("int", "float"):
            numbers = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            attributes[spec.name] = np.asarray(numbers, dtype=np.float64)
        else:
            attributes[spec.name] = column.cast(pa.string()).to_pylist()
    return CustomerArrays(ids, micros(table["signup_at"]), attributes, dtypes)


def event_columns_of(parts: Sequence[pa.Table], ids: Sequence[str]) -> EventColumns:
    """Stored events (canonical columns, any number of tables) of the customers ``ids``
    as the live path's arrays; events of other customers are marked -1 (ignored)."""
    value_set = pa.array(list(ids), _TEXT)
    owners = [
        np.asarray(
            pc.fill_null(
                pc.index_in(part["customer_id"].cast(_TEXT), value_set=value_set), -1
            ).to_numpy(zero_copy_only=False),
            np.int64,
        )
        for part in parts
    ]
    return event_arrays(parts, owners)


def _owned_by(
    events: Sequence[pa.Table] | EventColumns, asked: list[str], found: Sequence[str]
) -> EventColumns:
    """The events as arrays whose ``customer`` is a position in ``found`` (the
    customers with a stored row, in the order asked)."""
    if not isinstance(events, EventColumns):
        return event_columns_of(events, found)
    if list(found) == asked:
        return events
    at = {c: k for k, c in enumerate(found)}
    remap = np.array([at.get(c, -1) for c in asked] + [-1], dtype=np.int64)
    owner = np.asarray(events.customer, dtype=np.int64)
    return dataclasses.replace(events, customer=remap[np.where(owner >= 0, owner, -1)])


def _frame_dtype(dtype: str) -> Any:
    """The pandas dtype of a catalogue dtype in the feature frame (the rules' kinds)."""
    return pd.CategoricalDtype() if dtype == "category" else pd.api.types.pandas_dtype(dtype)


class ArrayRetag:
    """Tag values of a few stored customers at a cutoff, over arrays (module docstring).

    Built once per tagger: the feature catalogue and the rules compiled and
    type-checked against it are reused by every micro-batch.

    Args:
        spec: The feature spec (the batch run's).
        catalogue: The tag catalogue (active fact and rule tags are evaluated).
        facts: The facts config (attributes of the contract).
        predictors: Champion predictors.
        tags: The tags of the grid, in order (every evaluated tag must be among them).
    """

    def __init__(
        self,
        *,
        spec: FeatureSpec,
        catalogue: Catalogue,
        facts: FactsConfig,
        predictors: Sequence[Predictor],
        tags: Sequence[str],
    ) -> None:
        self.spec = spec
        self.catalogue = catalogue
        self.facts = facts
        self.predictors = list(predictors)
        self.tags = [str(t) for t in tags]
        self._slots = {t: j for j, t in enumerate(self.tags)}
        self._catalog = feature_catalog(spec)
        self._customer_columns = ["customer_id", "signup_at"] + [a.name for a in facts.attributes]
        kinds: dict[str, Any] = {"customer_id": "string"}
        kinds.update({info.name: _frame_dtype(info.dtype) for info in self._catalog})
        self._rules = ArrayRules(catalogue, kinds)

    def grid(
        self,
        customer_ids: Sequence[str],
        customers: pa.Table,
        events: Sequence[pa.Table] | EventColumns,
        *,
        as_of: pd.Timestamp,
        at: datetime,
        thresholds: Mapping[str, Mapping[str, float | None]],
    ) -> LiveGrid:
        """The live grid of ``customer_ids`` at ``as_of``: every tag's value, ``None``
        where it does not apply (customers without a row in ``customers``, or signed up
        at or after ``as_of``, get no value).

        Args:
            customer_ids: The re-tagged customers (distinct), in grid order.
            customers: Their stored rows (canonical columns; unknown ids have none).
            events: Their stored events: canonical columns in any number of tables, or
                arrays whose ``customer`` is a position in ``customer_ids``
                (``CustomerFacts.event_columns``).
            as_of: The cutoff (UTC, whole second).
            at: Time of the write (naive UTC): the as-of of a grid without any value.
            thresholds: The latest batch run's population aggregates.

        Raises:
            TagStoreError: A repeated customer, or a tag outside :attr:`tags`.
            TagsError: A rule fails.
        """
        ids = [str(c) for c in customer_ids]
        if len(set(ids)) != len(ids):
            raise TagStoreError("Expected each re-tagged customer once. Got repeats.")
        width = len(self.tags)
        size = len(ids) * width
        out = _Slots(size)
        cutoff = normalize_as_of(as_of)
        found = customer_arrays_of(customers, self.facts)
        index = SmallEvents(found, _owned_by(events, ids, found.ids))
        columns = cutoff_columns(
            index, cutoff, self.spec, self._catalog, columns=self._customer_columns
        )
        n = len(columns)
        if n:
            rows = pc.index_in(columns.customer_ids, value_set=pa.array(ids, _TEXT))
            position = np.asarray(rows.to_numpy(zero_copy_only=False), dtype=np.int64) * width
            arrays = {"customer_id": columns.customer_ids} | columns.columns
            results = self._rules.evaluate(
                arrays, n, index, columns.codes, as_of=cutoff, thresholds=thresholds
            )
            for found_tag in results:
                at_rows = position[found_tag.rows] + self._slot(found_tag.tag_id)
                values = np.asarray(found_tag.values, dtype=object)[found_tag.codes]
                label = self.catalogue.get(found_tag.tag_id).version_label
                out.put(at_rows, values, np.nan, "rule", label)
            matrices: dict[tuple[Any, ...], np.ndarray] = {}
            for predictor in self.predictors:
                self._predict(predictor, columns, position, cutoff, matrices, out)
        stamp = np.datetime64(pd.Timestamp(cutoff if out.filled.any() else at).tz_localize(None))
        return LiveGrid(
            customers=ids,
            tags=list(self.tags),
            value=out.value,
            score=out.score,
            source=out.source,
            version=out.version,
            as_of=np.full(size, stamp.astype("datetime64[us]")),
        )

    def _slot(self, tag_id: str) -> int:
        slot = self._slots.get(tag_id)
        if slot is None:
            raise TagStoreError(
                f"Expected live rows for the evaluated tags {self.tags}. Got {[tag_id]}."
            )
        return slot

    def _predict(
        self,
        predictor: Predictor,
        columns: Any,
        position: np.ndarray,
        cutoff: pd.Timestamp,
        matrices: dict[tuple[Any, ...], np.ndarray],
        out: _Slots,
    ) -> None:
        """One predictor's tag values of the scored rows, into ``out``."""
        model = getattr(predictor, "model", None)
        contract = getattr(model, "contract", None)
        tag_id = str(getattr(predictor, "tag_id", ""))
        if model is not None and isinstance(contract, ModelContract) and tag_id:
            key = matrix_plan(contract).key
            matrix = matrices.get(key)
            if matrix is None:
                matrix = matrices[key] = columns_matrix(columns.columns, len(columns), contract)
            scores = np.asarray(model.predict(matrix), dtype=np.float64)
            labels = np.asarray(list(model.label(scores)), dtype=object)
            out.put(position + self._slot(tag_id), labels, scores, "model", predictor.version)
            return
        # A predictor without a model contract (tests' fakes): the frame, as a batch run.
        rows = predictor.predict_tags(columns.frame(), as_of=cutoff)
        if not len(rows):
            return
        found = pc.index_in(
            pa.array(rows["customer_id"].astype(str).tolist(), _TEXT),
            value_set=pa.array(columns.customer_ids.to_pylist(), _TEXT),
        )
        row = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        if (row < 0).any():
            raise TagStoreError("Expected predicted rows of scored customers only.")
        slots = np.array([self._slot(str(t)) for t in rows["tag_id"]], dtype=np.int64)
        out.put(
            position[row] + slots,
            rows["value"].astype(object).where(rows["value"].notna(), None).to_numpy(),
            rows["score"].to_numpy(dtype=np.float64, na_value=np.nan),
            rows["source"].astype(str).to_numpy(dtype=object),
            rows["version"].astype(str).to_numpy(dtype=object),
        )


class _Slots:
    """The grid's arrays being filled; a (customer, tag) filled twice is refused, as
    :func:`tags.live.live_grid` refuses repeated rows."""

    def __init__(self, size: int) -> None:
        self.value = np.full(size, None, dtype=object)
        self.score = np.full(size, np.nan, dtype=np.float64)
        self.source = np.full(size, "rule", dtype=object)
        self.version = np.full(size, "", dtype=object)
        self.filled = np.zeros(size, dtype=bool)
        self.n_filled = 0

    def put(self, at: np.ndarray, value: Any, score: Any, source: Any, version: Any) -> None:
        # Counting the filled entries finds a repeat within ``at`` too (it fills fewer
        # than len(at)) without sorting ``at`` (np.unique) on every put.
        before = self.n_filled
        if self.filled[at].any():
            raise TagStoreError("Expected at most one live row per customer and tag. Got repeats.")
        self.filled[at] = True
        self.n_filled = int(np.count_nonzero(self.filled))
        if self.n_filled - before != len(at):
            raise TagStoreError("Expected at most one live row per customer and tag. Got repeats.")
        self.value[at] = value
        self.score[at] = score
        self.source[at] = source
        self.version[at] = version
