"""The /tags renderer as it was before rows were kept as bytes and planned per selection
(main at 737038e), kept verbatim as the reference the service's answers must equal byte
for byte (tests/serving/test_rendering_parity.py), except that live rows now carry their
display names too (issue 17: every /tags row has one)."""

# ruff: noqa

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.predictions import LiveModel
from serving.rendering import Snapshot, iso


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


def _live_text(row: Mapping[str, Any]) -> str:
    score = row.get("score")
    number = float(score) if score is not None and not pd.isna(score) else float("nan")
    return (
        '{"tag_id":'
        + json.dumps(str(row["tag_id"]), ensure_ascii=False)
        + ',"value":'
        + json.dumps(str(row["value"]), ensure_ascii=False)
        + ',"score":'
        + _score_literal(number)
        + ',"source":'
        + json.dumps(str(row["source"]))
        + ',"version":'
        + json.dumps(str(row["version"]), ensure_ascii=False)
        + ',"as_of":'
        + json.dumps(iso(row["as_of"]))
        + ',"updated_at":'
        + json.dumps(iso(row["updated_at"]))
        + "}"
    )


@dataclass(frozen=True)
class LiveOverlay:
    """Tag values real-time tagging wrote since the snapshot, over the snapshot's rows.

    Attributes:
        run_id: The snapshot run these values overlay (a new run replaces them).
        seq: The newest live write included.
        rows: customer_id -> tag_id -> row JSON text (with ``updated_at``), or ``None``
            where the tag no longer applies. Never mutated: merges make a new overlay.
    """

    run_id: str | None = None
    seq: int = 0
    rows: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def merged(self, frame: pd.DataFrame, *, run_id: str | None = None) -> LiveOverlay:
        """A new overlay with ``frame``'s live rows (``tags.live.LIVE_COLUMNS``) on top.

        ``run_id`` other than this overlay's starts from empty (batch wins).
        """
        base = self.rows if run_id is None or run_id == self.run_id else {}
        rows = dict(base)
        seq = self.seq if base else 0
        if len(frame):
            for cid, part in frame.groupby(frame["customer_id"].astype(str), sort=False):
                tags = dict(rows.get(str(cid), {}))
                for raw in part.to_dict("records"):
                    record = {str(k): v for k, v in raw.items()}
                    value = record.get("value")
                    missing = value is None or (not isinstance(value, str) and pd.isna(value))
                    tags[str(record["tag_id"])] = None if missing else _live_text(record)
                rows[str(cid)] = tags
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
                    # The one change since 737038e: live rows carry display names too.
                    name = shown.get(tid)
                    texts.append(
                        live_text
                        if name is None
                        else '{"display_name":' + name + "," + live_text[1:]
                    )
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
