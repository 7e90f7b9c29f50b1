"""``POST /explain``: why a customer has each tag, from the state the service serves.

Rule and fact tags are traced on the snapshot's feature row with the thresholds its
run recorded and the event windows precomputed for the snapshot (no raw events are
read per request); predicted tags are explained by the serving model whose score the
service returns (SHAP contributions of its booster), so an explanation never disagrees
with ``POST /tags``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from explain.errors import ExplainError
from explain.models import FrameRows, ModelReasons, explain_row
from explain.rules import RuleColumns
from explain.words import FeatureWords
from serving.predictions import LiveModel
from serving.rendering import SnapshotIndex

__all__ = ["CatalogueExplainer", "model_inputs"]


def model_inputs(model: Any) -> tuple[str, ...]:
    """The input features of a served model (its contract's), empty when unknown."""
    contract = getattr(model, "contract", None)
    names = getattr(contract, "feature_names", None) or getattr(model, "feature_names", None)
    return tuple(names or ())


class CatalogueExplainer:
    """Explanations of the catalogue's tags over a served snapshot.

    Args:
        catalogue: The tag catalogue (compiled rules; ``tags.catalogue.Catalogue``).
        words: Plain words for the features.
    """

    def __init__(self, catalogue: Any, words: FeatureWords) -> None:
        self.catalogue = catalogue
        self.words = words
        self._rules = [catalogue.compiled(t.id) for t in catalogue.active(sources=("fact", "rule"))]
        self._rows: tuple[SnapshotIndex, RuleColumns, FrameRows] | None = None
        # One spare thread for a second model's reasons: LightGBM's SHAP runs in C
        # without the GIL, so two champions' contributions are computed at once on two
        # cores. When the thread is busy with another request, the work stays inline.
        self._spare = threading.BoundedSemaphore(1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def prepare(self, index: SnapshotIndex) -> tuple[RuleColumns, FrameRows]:
        """The snapshot's columns as rule values and model inputs, once per snapshot.

        A request then reads its customer's row from arrays (no pandas per request).
        Built on the first request of a snapshot unless the service calls this when the
        snapshot is swapped in; the tuple is replaced whole, so concurrent requests see
        one snapshot's columns or the other's, never a mix.
        """
        rows = self._rows
        if rows is None or rows[0] is not index:
            rows = (index, RuleColumns(self._rules, index.features), FrameRows(index.features))
            self._rows = rows
        return rows[1], rows[2]

    def explain(
        self,
        index: SnapshotIndex,
        models: Mapping[str, LiveModel],
        customer_id: str,
        selected: frozenset[str],
        features: frozenset[str],
    ) -> dict[str, Any]:
        """One customer's selected tags, each with its why, and the features quoted.

        Args:
            index: The served snapshot.
            models: The serving models.
            customer_id: A customer of the snapshot (``index.knows`` it).
            selected: Tag ids to explain (what the caller may see and asked for).
            features: Features the caller may see (quoted values are filtered by it).
        """
        pos = index.positions.get(customer_id)
        stored = {
            tid: json.loads(text) for tid, text in index.tag_rows(customer_id) if tid in selected
        }
        rules = [c for c in self._rules if c.tag.id in selected]
        columns, frame_rows = self.prepare(index)
        by_tag = {lm.model.tag_id: lm for lm in models.values()}
        pending = self._start_reasons(by_tag, selected, frame_rows, pos)
        traces = {}
        if pos is not None and rules:
            traces = {t.tag_id: t for t in columns.trace(rules, pos, index.thresholds)}
        found = {tag_id: job() for tag_id, job in pending.items()}
        quoted: set[str] = set()
        out = []
        for tag in self.catalogue:
            if tag.id not in selected:
                continue
            line: dict[str, Any] = {
                "tag_id": tag.id,
                "display_name": tag.display_name,
                "source": tag.source,
                "value": None,
                "score": None,
                "version": None,
                "why": None,
            }
            if tag.id in stored:
                row_json = stored[tag.id]
                line.update(
                    value=row_json["value"], score=row_json["score"], version=row_json["version"]
                )
            trace = traces.get(tag.id)
            if trace is not None:
                line["why"] = trace.to_json()
                quoted |= trace.feature_names()
            live = by_tag.get(tag.id)
            if live is not None and pos is not None and len(live.scores):
                model = live.model
                line.update(
                    value=str(live.labels[pos]),
                    score=round(float(live.scores[pos]), 6),
                    version=f"{model.name}/{model.version}",
                )
                reasons = found.get(tag.id)
                if isinstance(reasons, ExplainError):
                    line["notes"] = [f"no reasons: {reasons}"]
                elif reasons is not None:
                    line["why"] = reasons.to_json()
                    quoted |= reasons.feature_names()
            if line["value"] is None and line["why"] is None:
                continue
            out.append(line)
        values: dict[str, Any] = {}
        if pos is not None:
            columns_of = index.features.columns
            for name in sorted(quoted & features):
                if name in columns_of:
                    values[name] = frame_rows.value(name, pos)
        return {"customer_id": customer_id, "found": True, "tags": out, "features": values}

    def _start_reasons(
        self,
        by_tag: Mapping[str, LiveModel],
        selected: frozenset[str],
        frame_rows: FrameRows,
        pos: int | None,
    ) -> dict[str, Callable[[], ModelReasons | ExplainError]]:
        """Tag id -> a call giving its model's reasons (or the ``ExplainError`` why
        there are none) for the selected predicted tags, every model but the last
        already running on the spare thread when it is free."""
        jobs: list[tuple[str, Callable[[], ModelReasons | ExplainError]]] = []
        if pos is None:
            return {}
        for tag_id, live in by_tag.items():
            model = live.model
            booster = getattr(model, "booster", None)
            contract = getattr(model, "contract", None)
            if tag_id not in selected or booster is None or contract is None:
                continue
            if not len(live.scores):
                continue
            call = partial(
                _reasons,
                booster,
                frame_rows.matrix(pos, contract),
                contract,
                partial(frame_rows.value, pos=pos),
                name=model.name,
                version=model.version,
                words=self.words,
                stored_score=float(live.scores[pos]),
            )
            jobs.append((tag_id, call))
        out: dict[str, Callable[[], ModelReasons | ExplainError]] = {}
        for k, (tag_id, work) in enumerate(jobs):
            if k < len(jobs) - 1 and self._spare.acquire(blocking=False):
                out[tag_id] = self._submit(work).result
            else:
                out[tag_id] = work
        return out

    def _submit(self, work: Callable[[], ModelReasons | ExplainError]) -> Future[Any]:
        """Run ``work`` on the spare thread (its slot is held; released when done)."""

        def run() -> ModelReasons | ExplainError:
            try:
                return work()
            finally:
                self._spare.release()

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="tagsmith-explain")
            pool = self._pool
        try:
            return pool.submit(run)
        except RuntimeError:  # the pool was shut down (interpreter exit): stay inline
            self._spare.release()
            done: Future[Any] = Future()
            done.set_result(work())
            return done


def _reasons(*args: Any, **kwargs: Any) -> ModelReasons | ExplainError:
    """:func:`explain.models.explain_row`, its ``ExplainError`` returned, not raised."""
    try:
        return explain_row(*args, **kwargs)
    except ExplainError as exc:
        return exc
