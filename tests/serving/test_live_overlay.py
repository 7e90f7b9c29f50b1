"""LiveOverlay.merged renders live rows column-wise: the same texts as row by row."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from serving.rendering import LiveOverlay, iso, live_texts


def _row_text(row: dict[str, Any]) -> bytes | None:
    """The row-by-row rendering the column-wise one replaced (the reference)."""
    value = row.get("value")
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    score = row.get("score")
    number = float(score) if score is not None and not pd.isna(score) else float("nan")
    literal = repr(round(number, 6)) if math.isfinite(number) else "null"
    return (
        '{"tag_id":'
        + json.dumps(str(row["tag_id"]), ensure_ascii=False)
        + ',"value":'
        + json.dumps(str(row["value"]), ensure_ascii=False)
        + ',"score":'
        + literal
        + ',"source":'
        + json.dumps(str(row["source"]))
        + ',"version":'
        + json.dumps(str(row["version"]), ensure_ascii=False)
        + ',"as_of":'
        + json.dumps(iso(row["as_of"]))
        + ',"updated_at":'
        + json.dumps(iso(row["updated_at"]))
        + "}"
    ).encode("utf-8")


def _reference_merge(base: dict[str, dict[str, str | None]], frame: pd.DataFrame) -> dict:
    rows = {k: dict(v) for k, v in base.items()}
    for record in frame.to_dict("records"):
        rows.setdefault(str(record["customer_id"]), {})[str(record["tag_id"])] = _row_text(record)
    return rows


def _frame(n: int, seed: int, *, seq: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = np.array(["active", "churned", "Kundin «A»", 'say "hi"\\', None], dtype=object)
    scores = rng.random(n)
    scores[rng.random(n) < 0.3] = np.nan
    at = pd.Timestamp("2026-12-06 10:00:01.5", tz="UTC")
    return pd.DataFrame(
        {
            "customer_id": pd.Series(rng.choice(["C1", "C2", "Ç3", "C4"], size=n), dtype="string"),
            "tag_id": pd.Series(rng.choice(["lifecycle", "churn_risk", "tier"], size=n)),
            "value": pd.Series(values[rng.integers(0, len(values), size=n)], dtype="string"),
            "score": scores,
            "source": rng.choice(["rule", "model"], size=n),
            "version": rng.choice(["", "churn-predictor/3", "v—2"], size=n),
            "as_of": [at.floor("s") + pd.Timedelta(seconds=int(k)) for k in rng.integers(0, 3, n)],
            "updated_at": pd.Series([at.tz_localize(None)] * n),  # naive: taken as UTC
            "seq": seq,
        }
    )


def test_live_texts_equal_the_row_by_row_rendering() -> None:
    frame = _frame(400, 1, seq=3)
    expected = [_row_text(r) for r in frame.to_dict("records")]
    assert live_texts(frame) == expected
    assert any(t is None for t in expected)
    assert any(t is not None for t in expected)
    assert all(json.loads(t)["tag_id"] for t in expected if t is not None)


def test_live_texts_of_rows_whose_values_are_all_missing() -> None:
    frame = _frame(5, 2, seq=1)
    frame["value"] = pd.Series([None] * 5, dtype="string")
    assert live_texts(frame) == [None] * 5


def test_merged_equals_merging_row_by_row_later_rows_winning() -> None:
    first, second = _frame(300, 3, seq=4), _frame(300, 4, seq=9)
    overlay = LiveOverlay(run_id="r1").merged(first).merged(second)
    expected = _reference_merge(_reference_merge({}, first), second)
    assert {k: dict(v) for k, v in overlay.rows.items()} == expected
    assert list(overlay.rows) == list(expected)  # customers in order of first appearance
    assert overlay.seq == 9
    assert overlay.run_id == "r1"
    # Another run starts from empty (batch wins).
    fresh = overlay.merged(second, run_id="r2")
    assert {k: dict(v) for k, v in fresh.rows.items()} == _reference_merge({}, second)
    assert fresh.seq == 9
    assert fresh.run_id == "r2"


def test_merged_in_place_equals_a_copying_merge_and_shares_the_mapping() -> None:
    first, second = _frame(200, 5, seq=2), _frame(200, 6, seq=7)
    base = LiveOverlay(run_id="r1").merged(first)
    copied = base.merged(second)
    kept = dict(base.rows)
    in_place = base.merged(second, in_place=True)
    assert {k: dict(v) for k, v in in_place.rows.items()} == {
        k: dict(v) for k, v in copied.rows.items()
    }
    assert in_place.rows is base.rows
    assert in_place.seq == copied.seq == 7
    # Customers' tag maps are replaced, never mutated: what a reader held is unchanged.
    assert {k: dict(v) for k, v in kept.items()} == {
        k: dict(v) for k, v in LiveOverlay(run_id="r1").merged(first).rows.items()
    }
