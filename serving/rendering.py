"""JSON the service returns, rendered once where it can be.

Serialising a tag row costs more than serving it, so every stored row of a snapshot is
rendered to JSON text once, when the snapshot is loaded (:class:`SnapshotIndex`); a
``POST /tags`` request joins the texts it returns and renders only the predicted rows,
whose scores it looks up (:func:`render_tags`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.predictions import LiveModel

__all__ = [
    "LiveOverlay",
    "RenderedTags",
    "Snapshot",
    "SnapshotIndex",
    "iso",
    "json_row",
    "live_texts",
    "render_tags",
]


@dataclass(frozen=True)
class Snapshot:
    """A tag snapshot and the feature snapshot it was computed from.

    Attributes:
        tags: Long tag table (customer_id, tag_id, value, score, source, version, as_of).
        features: Feature frame, one row per customer (``customer_id`` column first).
        as_of: The snapshot's as-of timestamp.
        run_id: The tagging run that wrote it.
        thresholds: Tag id -> the population thresholds its rule used in that run
            (``median(recency_days)`` -> 21.0), for explanations.
    """

    tags: pd.DataFrame
    features: pd.DataFrame
    as_of: pd.Timestamp
    run_id: str
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def iso(ts: Any) -> str:
    """ISO text of a timestamp (naive times are taken as UTC)."""
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.isoformat()


def _json_literals(values: pd.Series) -> pd.Series:
    """JSON text of each string, escaped once per distinct value (tag values repeat)."""
    codes, uniques = pd.factorize(values.astype(str), sort=False)
    literals = np.array([json.dumps(str(u), ensure_ascii=False) for u in uniques], dtype=object)
    return pd.Series(
        literals[codes] if len(uniques) else np.array([], dtype=object), index=values.index
    )


def _score_literal(score: float) -> str:
    return repr(round(score, 6)) if math.isfinite(score) else "null"


@dataclass(frozen=True)
class SnapshotIndex:
    """A snapshot prepared for lookups: each customer's tag rows as ready JSON text.

    Attributes:
        as_of: ISO as-of of the snapshot.
        run_id: Tagging run id.
        rows: customer_id -> ((tag_id, row JSON text), ...), never mutated.
        positions: customer_id -> row of ``features``.
        features: The feature frame (kept to prepare matrices of new models).
        thresholds: The run's population thresholds per tag (see :class:`Snapshot`).
        named: Whether ``rows`` already carry each tag's ``display_name`` (built with
            ``names``), so :func:`render_tags` joins them as they are.
    """

    as_of: str
    run_id: str
    rows: Mapping[str, tuple[tuple[str, str], ...]]
    positions: Mapping[str, int]
    features: pd.DataFrame
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    named: bool = False

    @classmethod
    def build(cls, snapshot: Snapshot, names: Mapping[str, str] | None = None) -> SnapshotIndex:
        """Index ``snapshot``: vectorised rendering, then one pass to group by customer.

        ``names`` (tag id -> display name as a JSON literal) puts ``display_name`` first
        in every row of a named tag once here, instead of in every request.
        """
        as_of = iso(snapshot.as_of)
        tags = snapshot.tags.reset_index(drop=True)
        rows: dict[str, tuple[tuple[str, str], ...]] = {}
        if len(tags):
            scores = pd.to_numeric(tags["score"], errors="coerce").to_numpy(dtype=np.float64)
            score_text = np.full(len(tags), "null", dtype=object)
            finite = np.isfinite(scores)
            score_text[finite] = [repr(v) for v in np.round(scores[finite], 6).tolist()]
            opening = pd.Series("{", index=tags.index, dtype=object)
            if names:
                literal = tags["tag_id"].astype(str).map(dict(names))
                has = literal.notna()
                opening[has] = '{"display_name":' + literal[has].astype(object) + ","
            text = (
                opening
                + '"tag_id":'
                + _json_literals(tags["tag_id"])
                + ',"value":'
                + _json_literals(tags["value"])
                + ',"score":'
                + pd.Series(score_text, index=tags.index)
                + ',"source":'
                + _json_literals(tags["source"])
                + ',"version":'
                + _json_literals(tags["version"])
                + ',"as_of":'
                + json.dumps(as_of)
                + "}"
            )
            ids = tags["customer_id"].astype(str).to_numpy(dtype=object)
            order = np.argsort(ids, kind="stable")
            ids_sorted = ids[order]
            tag_ids = tags["tag_id"].astype(str).to_numpy(dtype=object)[order]
            texts = text.to_numpy(dtype=object)[order]
            bounds = np.flatnonzero(ids_sorted[1:] != ids_sorted[:-1]) + 1
            starts = [0, *bounds.tolist()]
            stops = [*bounds.tolist(), len(ids_sorted)]
            for lo, hi in zip(starts, stops, strict=True):
                rows[ids_sorted[lo]] = tuple(zip(tag_ids[lo:hi], texts[lo:hi], strict=True))
        features = snapshot.features.reset_index(drop=True)
        positions = {str(c): i for i, c in enumerate(features["customer_id"].astype(str))}
        return cls(
            as_of=as_of,
            run_id=snapshot.run_id,
            rows=rows,
            positions=positions,
            features=features,
            thresholds=snapshot.thresholds,
            named=names is not None,
        )

    def knows(self, customer_id: str) -> bool:
        """Whether the customer is in the tag or feature snapshot."""
        return customer_id in self.positions or customer_id in self.rows


def _literal_column(values: pd.Series, render: Any) -> np.ndarray:
    """``render(value)`` per row, computed once per distinct value; None where NA."""
    codes, uniques = pd.factorize(values, sort=False)
    texts = np.asarray([render(u) for u in uniques] + [None], dtype=object)
    return texts[codes]  # NA rows have code -1: the trailing None


def live_texts(frame: pd.DataFrame) -> list[str | None]:
    """Each live row's JSON text (``updated_at`` included), None where ``value`` is NA.

    Column-wise: tag ids, values, sources, versions and times repeat across rows, so
    each distinct one is escaped once; rendering row by row cost ~15 us a row, which
    a 5,000-event micro-batch (70,000 live rows) turned into a second of CPU.
    """
    tag = _literal_column(frame["tag_id"], lambda u: json.dumps(str(u), ensure_ascii=False))
    value = _literal_column(frame["value"], lambda u: json.dumps(str(u), ensure_ascii=False))
    source = _literal_column(frame["source"], lambda u: json.dumps(str(u)))
    version = _literal_column(frame["version"], lambda u: json.dumps(str(u), ensure_ascii=False))
    as_of = _literal_column(frame["as_of"], lambda u: json.dumps(iso(u)))
    updated = _literal_column(frame["updated_at"], lambda u: json.dumps(iso(u)))
    if "score" in frame.columns:
        numbers = pd.to_numeric(frame["score"]).to_numpy(dtype=float, na_value=np.nan)
        scores = [_score_literal(x) for x in numbers.tolist()]
    else:
        scores = ["null"] * len(frame)
    return [
        None
        if v is None
        else f'{{"tag_id":{t},"value":{v},"score":{s},"source":{src},"version":{ver},'
        f'"as_of":{a},"updated_at":{u}}}'
        for t, v, s, src, ver, a, u in zip(
            tag, value, scores, source, version, as_of, updated, strict=True
        )
    ]


@dataclass(frozen=True)
class LiveOverlay:
    """Tag values real-time tagging wrote since the snapshot, over the snapshot's rows.

    Attributes:
        run_id: The snapshot run these values overlay (a new run replaces them).
        seq: The newest live write included.
        rows: customer_id -> tag_id -> row JSON text (with ``updated_at``), or ``None``
            where the tag no longer applies. A customer's tags are never mutated, only
            replaced whole; the mapping itself only by ``merged(..., in_place=True)``.
    """

    run_id: str | None = None
    seq: int = 0
    rows: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def merged(
        self, frame: pd.DataFrame, *, run_id: str | None = None, in_place: bool = False
    ) -> LiveOverlay:
        """A new overlay with ``frame``'s live rows (``tags.live.LIVE_COLUMNS``) on top.

        ``run_id`` other than this overlay's starts from empty (batch wins).
        ``in_place`` updates this overlay's mapping (shared by the new one) instead of
        copying it: copying every live customer per ``POST /events`` cost milliseconds
        per 100,000 of them. For a caller that serialises its merges (the service's lock);
        a reader of the old overlay then sees the newer values, each customer's whole.
        """
        base = self.rows if run_id is None or run_id == self.run_id else {}
        rows = base if in_place and isinstance(base, dict) and base is self.rows else dict(base)
        seq = self.seq if base else 0
        if len(frame):
            changed: dict[str, dict[str, str | None]] = {}
            ids = frame["customer_id"].astype(str).tolist()
            tag_ids = frame["tag_id"].astype(str).tolist()
            # Rows in frame order: a later row of the same (customer, tag) wins.
            for cid, tag_id, text in zip(ids, tag_ids, live_texts(frame), strict=True):
                tags = changed.get(cid)
                if tags is None:
                    tags = changed[cid] = dict(rows.get(cid, {}))
                tags[tag_id] = text
            rows.update(changed)
            if "seq" in frame.columns:
                seq = max(seq, int(pd.to_numeric(frame["seq"]).max()))
        return LiveOverlay(run_id=self.run_id if run_id is None else run_id, seq=seq, rows=rows)


@dataclass(frozen=True)
class RenderedTags:
    """The JSON body of a ``POST /tags`` answer and what the audit entry records.

    Attributes:
        body: The whole answer, UTF-8 JSON.
        returned: Tag ids present in the answer.
        unknown: Requested ids in no snapshot, in request order.
        model_versions: Registered model name -> version that produced its rows.
    """

    body: bytes
    returned: frozenset[str]
    unknown: list[str]
    model_versions: dict[str, str] = field(default_factory=dict)


def render_tags(
    snap: SnapshotIndex | None,
    models: Sequence[LiveModel],
    selected: frozenset[str],
    customer_ids: Sequence[str],
    live_overlay: LiveOverlay | None = None,
    names: Mapping[str, str] | None = None,
) -> RenderedTags:
    """The ``POST /tags`` answer: per customer, stored rows and the champions' rows.

    Stored rows are joined from their precomputed JSON; predicted rows are looked up in
    each champion's scores of the snapshot. A customer re-tagged in real time gets its
    live values (with ``updated_at``) instead of the snapshot's for the tags re-tagged.
    Unknown ids are reported per id (``found: false``) in ``results`` and in
    ``unknown_ids``. ``names`` (tag id -> its display name as a JSON literal) adds
    ``display_name`` to every row.
    """
    overlay = live_overlay.rows if live_overlay is not None else {}
    shown = names or {}
    # Rows of a named index carry their display names already.
    stored_names: Mapping[str, str] = {} if snap is not None and snap.named else shown
    live = [
        lm for lm in models if lm.model.tag_id in selected and snap is not None and len(lm.scores)
    ]
    static_tags = selected - {lm.model.tag_id for lm in live}
    parts: list[list[str] | None] = []  # per customer: its tag texts (None: unknown)
    unknown: list[str] = []
    found_pos: list[int] = []
    found_slot: list[int] = []
    returned: set[str] = set()
    live_slots: dict[int, Mapping[str, str | None]] = {}
    for cid in customer_ids:
        over = overlay.get(cid)
        if over is None and (snap is None or not snap.knows(cid)):
            unknown.append(cid)
            parts.append(None)
            continue
        texts = []
        for tid, text in snap.rows.get(cid, ()) if snap is not None else ():
            if tid in static_tags and (over is None or tid not in over):
                name = stored_names.get(tid)
                texts.append(text if name is None else '{"display_name":' + name + "," + text[1:])
                returned.add(tid)
        if over is not None:
            for tid, live_text in over.items():
                if live_text is not None and tid in selected:
                    texts.append(live_text)
                    returned.add(tid)
            live_slots[len(parts)] = over
        parts.append(texts)
        pos = snap.positions.get(cid) if snap is not None else None
        if pos is not None and live:
            found_pos.append(pos)
            found_slot.append(len(parts) - 1)
    model_versions: dict[str, str] = {}
    if found_pos and snap is not None:
        idx = np.asarray(found_pos, dtype=np.intp)
        as_of_text = json.dumps(snap.as_of)
        for lm in live:
            model = lm.model
            scores = lm.scores[idx]
            labels = lm.labels[idx].tolist()
            model_versions[model.name] = model.version
            returned.add(model.tag_id)
            name = shown.get(model.tag_id)
            head = (
                "{"
                + ("" if name is None else '"display_name":' + name + ",")
                + '"tag_id":'
                + json.dumps(model.tag_id)
                + ',"value":'
            )
            tail = (
                ',"source":"model","version":'
                + json.dumps(f"{model.name}/{model.version}")
                + ',"as_of":'
                + as_of_text
                + "}"
            )
            label_text = {v: json.dumps(v) for v in set(labels)}
            for slot, score, label in zip(found_slot, scores.tolist(), labels, strict=True):
                if model.tag_id in live_slots.get(slot, ()):
                    continue  # re-tagged in real time: the live value is shown
                texts_of = parts[slot]
                assert texts_of is not None
                texts_of.append(
                    head + label_text[label] + ',"score":' + _score_literal(score) + tail
                )
    results = _customer_texts(customer_ids, parts)
    head_text = json.dumps(
        {
            "as_of": snap.as_of if snap else None,
            "run_id": snap.run_id if snap else None,
            "model_versions": model_versions,
        }
    )
    body = (
        head_text[:-1]
        + ',"results":['
        + ",".join(results)
        + "],"
        + '"unknown_ids":'
        + json.dumps(unknown)
        + "}"
    ).encode("utf-8")
    return RenderedTags(
        body=body, returned=frozenset(returned), unknown=unknown, model_versions=model_versions
    )


def _customer_texts(customer_ids: Sequence[str], parts: Sequence[list[str] | None]) -> list[str]:
    """Each customer's JSON object: its tag texts, or ``found: false`` (None)."""
    results = []
    for cid, texts_or_none in zip(customer_ids, parts, strict=True):
        cid_text = json.dumps(cid)
        if texts_or_none is None:
            results.append(
                '{"customer_id":' + cid_text + ',"found":false,"error":"unknown customer id"}'
            )
        else:
            results.append(
                '{"customer_id":'
                + cid_text
                + ',"found":true,"tags":['
                + ",".join(texts_or_none)
                + "]}"
            )
    return results


def json_row(row: pd.Series) -> dict[str, Any]:
    """JSON-ready dict of one feature row (missing values as ``None``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if (
            value is None
            or (isinstance(value, (float, np.floating)) and np.isnan(value))
            or value is pd.NA
        ):
            out[str(key)] = None
        elif isinstance(value, pd.Timestamp):
            out[str(key)] = value.isoformat()
        elif isinstance(value, np.generic):
            out[str(key)] = value.item()
        else:
            try:
                missing = bool(pd.isna(value))
            except (TypeError, ValueError):
                missing = False
            out[str(key)] = None if missing else value
    return out
