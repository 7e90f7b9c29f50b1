"""JSON the service returns, rendered once where it can be.

Serialising a tag row costs more than serving it, so every stored row of a snapshot is
rendered to UTF-8 JSON once, when the snapshot is loaded (:class:`SnapshotIndex`); a
``POST /tags`` request joins the bytes it returns and renders only the predicted rows,
whose scores it looks up (:func:`render_tags`). Rows are kept as UTF-8 bytes, not str:
display names are often not ASCII, and such a str holds 2 or 4 bytes per character,
so bytes halve the index and the answer needs no encoding pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.predictions import LiveModel, ServedModel

# What json.dumps(a_str) runs (ensure_ascii=True), called directly per customer id.
_ascii_literal: Callable[[str], str] = json.encoder.encode_basestring_ascii

__all__ = [
    "LiveOverlay",
    "RenderedTags",
    "Snapshot",
    "SnapshotIndex",
    "iso",
    "json_row",
    "live_texts",
    "predicted_texts",
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


# Selections whose row plans a snapshot index keeps (roles x request filters).
_MAX_PLANNED_SELECTIONS = 64
# Which of a customer's rows a selection keeps: (their indices, or None when all are
# kept; the tag ids kept).
_Plan = tuple[tuple[int, ...] | None, tuple[str, ...]]


@dataclass(frozen=True)
class SnapshotIndex:
    """A snapshot prepared for lookups: each customer's tag rows as ready JSON text.

    Attributes:
        as_of: ISO as-of of the snapshot.
        run_id: Tagging run id.
        rows: customer_id -> (its tag ids, each row's UTF-8 JSON in the same order),
            never mutated. Customers with the same tag ids share one tuple of ids, so a
            request works out once per such tuple which rows a selection keeps
            (:meth:`plan`).
        positions: customer_id -> row of ``features``.
        features: The feature frame (kept to prepare matrices of new models).
        thresholds: The run's population thresholds per tag (see :class:`Snapshot`).
        named: Whether ``rows`` already carry each tag's ``display_name`` (built with
            ``names``), so :func:`render_tags` joins them as they are.
    """

    as_of: str
    run_id: str
    rows: Mapping[str, tuple[tuple[str, ...], tuple[bytes, ...]]]
    positions: Mapping[str, int]
    features: pd.DataFrame
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    named: bool = False
    # selection -> {tag ids of a customer: (indices kept or None for all, ids kept)}.
    _plans: dict[frozenset[str], dict[tuple[str, ...], _Plan]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def build(cls, snapshot: Snapshot, names: Mapping[str, str] | None = None) -> SnapshotIndex:
        """Index ``snapshot``: vectorised rendering, then one pass to group by customer.

        ``names`` (tag id -> display name as a JSON literal) puts ``display_name`` first
        in every row of a named tag once here, instead of in every request.
        """
        as_of = iso(snapshot.as_of)
        tags = snapshot.tags.reset_index(drop=True)
        rows: dict[str, tuple[tuple[str, ...], tuple[bytes, ...]]] = {}
        if len(tags):
            texts_all = _row_texts(tags, as_of, names)
            ids = tags["customer_id"].astype(str).to_numpy(dtype=object)
            order = np.argsort(ids, kind="stable")
            ids_sorted = ids[order]
            tag_ids = tags["tag_id"].astype(str).to_numpy(dtype=object)[order]
            texts = texts_all[order]
            bounds = np.flatnonzero(ids_sorted[1:] != ids_sorted[:-1]) + 1
            starts = [0, *bounds.tolist()]
            stops = [*bounds.tolist(), len(ids_sorted)]
            shared: dict[tuple[str, ...], tuple[str, ...]] = {}
            for lo, hi in zip(starts, stops, strict=True):
                tids = tuple(tag_ids[lo:hi].tolist())
                rows[ids_sorted[lo]] = (shared.setdefault(tids, tids), tuple(texts[lo:hi].tolist()))
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

    def tag_rows(self, customer_id: str) -> list[tuple[str, bytes]]:
        """The customer's stored rows as (tag id, row UTF-8 JSON) pairs (none if unknown)."""
        entry = self.rows.get(customer_id)
        return [] if entry is None else list(zip(entry[0], entry[1], strict=True))

    def plans(self, selection: frozenset[str]) -> dict[tuple[str, ...], _Plan]:
        """The row plans of ``selection`` (filled by :func:`render_tags`, kept per index)."""
        plans = self._plans.get(selection)
        if plans is None:
            if len(self._plans) >= _MAX_PLANNED_SELECTIONS:
                self._plans.clear()  # arbitrary request filters: keep it bounded
            plans = self._plans.setdefault(selection, {})
        return plans


def _plan(tids: tuple[str, ...], selection: frozenset[str]) -> _Plan:
    keep = tuple(i for i, t in enumerate(tids) if t in selection)
    kept = tuple(tids[i] for i in keep)
    return (None if len(keep) == len(tids) else keep), kept


def _row_texts(tags: pd.DataFrame, as_of: str, names: Mapping[str, str] | None) -> np.ndarray:
    """Each stored tag row's UTF-8 JSON (``display_name`` first where ``names`` has one)."""
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
    return np.array([t.encode("utf-8") for t in text.tolist()], dtype=object)


def _literal_column(values: pd.Series, render: Any) -> np.ndarray:
    """``render(value)`` per row, computed once per distinct value; None where NA."""
    codes, uniques = pd.factorize(values, sort=False)
    texts = np.asarray([render(u) for u in uniques] + [None], dtype=object)
    return texts[codes]  # NA rows have code -1: the trailing None


def live_texts(frame: pd.DataFrame) -> list[bytes | None]:
    """Each live row's UTF-8 JSON (``updated_at`` included), None where ``value`` is NA.

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
        else (
            f'{{"tag_id":{t},"value":{v},"score":{s},"source":{src},"version":{ver},'
            f'"as_of":{a},"updated_at":{u}}}'
        ).encode()
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
        rows: customer_id -> tag_id -> row UTF-8 JSON (with ``updated_at``), or ``None``
            where the tag no longer applies. A customer's tags are never mutated, only
            replaced whole; the mapping itself only by ``merged(..., in_place=True)``.
    """

    run_id: str | None = None
    seq: int = 0
    rows: Mapping[str, Mapping[str, bytes | None]] = field(default_factory=dict)

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
            changed: dict[str, dict[str, bytes | None]] = {}
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
    live_ids = [lm.model.tag_id for lm in live]
    static_tags = selected - set(live_ids)
    no_rows: dict[str, tuple[tuple[str, ...], tuple[bytes, ...]]] = {}
    rows_get = (snap.rows if snap is not None else no_rows).get
    positions: Mapping[str, int] = snap.positions if snap is not None else {}
    where = [positions.get(cid) for cid in customer_ids]
    # Predicted rows first, all customers at once: per found customer, one row per model.
    found = [p for p in where if p is not None] if live else []
    predicted: list[tuple[bytes, ...]] = []
    model_versions: dict[str, str] = {}
    returned: set[str] = set()
    if found and snap is not None:
        # Rows the keeper rendered carry the names of a named index's rows (the names
        # the service passes here too).
        rendered = snap.named and names is not None
        predicted = _predicted_rows(live, found, snap.as_of, shown, rendered, model_versions)
        returned.update(live_ids)
    # The usual case (named rows, no live value) keeps rows by a plan per customer's tag
    # ids, worked out once per selection and index; the rest goes row by row.
    plans = snap.plans(static_tags) if snap is not None and not stored_names else None
    kept_ids: dict[tuple[str, ...], None] = {}  # the plans' kept ids seen (-> returned)
    results: list[bytes] = []
    unknown: list[str] = []
    n_found = 0
    for cid, pos in zip(customer_ids, where, strict=True):
        cid_text = _id_literal(cid)
        over = overlay.get(cid) if overlay else None
        entry = rows_get(cid)
        if entry is None and pos is None and over is None:
            unknown.append(cid)
            results.append(b'{"customer_id":' + cid_text + _UNKNOWN)
            continue
        texts: Sequence[bytes]
        if over is None and plans is not None:
            texts = ()
            if entry is not None:
                tids, stored = entry
                plan = plans.get(tids)
                if plan is None:
                    plan = plans[tids] = _plan(tids, static_tags)
                keep, kept = plan
                texts = stored if keep is None else [stored[i] for i in keep]
                kept_ids[kept] = None
            if pos is not None and predicted:
                texts = [*texts, *predicted[n_found]]
                n_found += 1
        else:
            texts = _stored_texts(entry, static_tags, over, stored_names, returned)
            if over is not None:
                for tid, text in over.items():
                    if text is not None and tid in selected:
                        # Live rows are rendered without names (few per request).
                        name = shown.get(tid)
                        if name is not None:
                            text = b'{"display_name":' + name.encode("utf-8") + b"," + text[1:]
                        texts.append(text)
                        returned.add(tid)
            if pos is not None and predicted:
                # A tag re-tagged in real time shows its live value, not the model's.
                texts += [
                    t
                    for t, tid in zip(predicted[n_found], live_ids, strict=True)
                    if tid not in (over or ())
                ]
                n_found += 1
        results.append(b'{"customer_id":' + cid_text + _FOUND + b",".join(texts) + b"]}")
    for kept in kept_ids:
        returned.update(kept)
    head_text = json.dumps(
        {
            "as_of": snap.as_of if snap else None,
            "run_id": snap.run_id if snap else None,
            "model_versions": model_versions,
        }
    )
    body = b"".join(
        (
            head_text[:-1].encode("utf-8"),
            b',"results":[',
            b",".join(results),
            b'],"unknown_ids":',
            json.dumps(unknown).encode("utf-8"),
            b"}",
        )
    )
    return RenderedTags(
        body=body, returned=frozenset(returned), unknown=unknown, model_versions=model_versions
    )


_FOUND = b',"found":true,"tags":['
_UNKNOWN = b',"found":false,"error":"unknown customer id"}'


def _id_literal(cid: str) -> bytes:
    """``json.dumps(cid)`` as bytes (its C function directly when ``cid`` is a str)."""
    text = _ascii_literal(cid) if isinstance(cid, str) else json.dumps(cid)
    return text.encode("ascii")


def _stored_texts(
    entry: tuple[tuple[str, ...], tuple[bytes, ...]] | None,
    static_tags: frozenset[str],
    over: Mapping[str, bytes | None] | None,
    stored_names: Mapping[str, str],
    returned: set[str],
) -> list[bytes]:
    """A customer's stored rows row by row: those a live value replaces are left out,
    and ``stored_names`` go into the rows of an index built without names."""
    texts: list[bytes] = []
    if entry is None:
        return texts
    for tid, text in zip(entry[0], entry[1], strict=True):
        if tid in static_tags and (over is None or tid not in over):
            name = stored_names.get(tid)
            if name is not None:
                text = b'{"display_name":' + name.encode("utf-8") + b"," + text[1:]
            texts.append(text)
            returned.add(tid)
    return texts


def _predicted_rows(
    live: Sequence[LiveModel],
    found: Sequence[int],
    as_of: str,
    names: Mapping[str, str],
    rendered: bool,
    model_versions: dict[str, str],
) -> list[tuple[bytes, ...]]:
    """Per found customer (feature-row positions ``found``), each champion's row.

    With ``rendered`` (a named index: its champions' rows were rendered by the state
    keeper with the same names) rows are looked up; otherwise, or for a champion
    without them, rendered here with ``names``. Fills ``model_versions`` (model name ->
    version).
    """
    idx = np.asarray(found, dtype=np.intp)
    columns = []
    for lm in live:
        model_versions[lm.model.name] = lm.model.version
        if rendered and lm.texts is not None:
            columns.append(lm.texts[idx].tolist())
        else:
            columns.append(_model_rows(lm.model, lm.scores[idx], lm.labels[idx], as_of, names))
    return list(zip(*columns, strict=True))


def predicted_texts(live: LiveModel, as_of: str, names: Mapping[str, str]) -> np.ndarray:
    """A champion's tag row of every feature-snapshot customer, as UTF-8 JSON.

    Built once per swap (model or snapshot) by the state keeper, with the display names
    of the index's rows, so a request only looks its customers' rows up.
    """
    rows = _model_rows(live.model, live.scores, live.labels, as_of, names)
    return np.array(rows, dtype=object) if rows else np.empty(0, dtype=object)


def _model_rows(
    model: ServedModel,
    scores: np.ndarray,
    labels: np.ndarray,
    as_of: str,
    names: Mapping[str, str],
) -> list[bytes]:
    """The model's tag row for each (score, label), as UTF-8 JSON."""
    tag_id = model.tag_id
    name = names.get(tag_id)
    head = (
        "{"
        + ("" if name is None else '"display_name":' + name + ",")
        + '"tag_id":'
        + json.dumps(tag_id)
        + ',"value":'
    )
    tail = (
        ',"source":"model","version":'
        + json.dumps(f"{model.name}/{model.version}")
        + ',"as_of":'
        + json.dumps(as_of)
        + "}"
    ).encode("utf-8")
    label_list = labels.tolist()
    # Everything up to the score, once per label.
    opening = {v: (head + json.dumps(v) + ',"score":').encode("utf-8") for v in set(label_list)}
    # Scores are finite by LiveModel's check; the general path stays for any other.
    if np.isfinite(scores).all():
        score_text = [repr(round(v, 6)).encode("ascii") for v in scores.tolist()]
    else:
        score_text = [_score_literal(v).encode("ascii") for v in scores.tolist()]
    return [
        opening[label] + score + tail for label, score in zip(label_list, score_text, strict=True)
    ]


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
