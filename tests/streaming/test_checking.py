"""Batches validated together get what each would get validated alone, after the others."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

import streaming.checking as checking
from streaming.checking import Checked, check_batches
from tests.streaming.conftest import NOW, Setup, records


@dataclass
class _Req:
    records: list[Any]
    source: str


def _group(setup: Setup) -> list[_Req]:
    batch = records(setup.later)
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for r in batch:
        by_customer.setdefault(str(r["customer_id"]), []).append(r)
    groups = sorted(by_customer.values(), key=len, reverse=True)
    assert len(groups) >= 5
    assert len(groups[1]) >= 2
    a, e, b, c, d = groups[:5]
    c = [*c, *groups[5]] if len(c) < 2 else c
    other = str(setup.store.load_customers()["customer_id"].iloc[-1])
    return [
        _Req(a, "POST /events (one)"),
        _Req(b, "POST /events (one)"),  # same source, other customers: validated with a
        _Req(
            [
                {**c[0], "event_id": "bad-ts", "occurred_at": "yesterday"},
                {**c[1], "event_id": "bad-type", "event_type": "teleport"},
                {
                    "event_id": "nobody",
                    "customer_id": "nobody",
                    "occurred_at": NOW.isoformat(),
                    "event_type": "login",
                },
                "not an object",
                {**d[0], "event_id": "extra", "colour": "red"},
            ],
            "POST /events (two)",
        ),
        # Repeats a's ids and twins a row under a new id: shares a customer, a new run.
        _Req([*a[:2], {**a[0], "event_id": "twin-of-a0"}], "POST /events (three)"),
        _Req([*e, {**e[0], "event_id": "twin-in-batch"}], "POST /events (one)"),
        _Req(
            [
                {
                    "event_id": "late",
                    "customer_id": other,
                    "occurred_at": "2999-01-01T00:00:00Z",
                    "event_type": "login",
                }
            ],
            "nats:events.shop",
        ),
    ]


def _run(setup: Setup, group: list[_Req], *, joint: bool) -> tuple[list[Checked], list[Any]]:
    errors: list[Any] = []
    setup.tagger.index.refresh()
    out = check_batches(
        group,
        now=NOW,
        index=setup.tagger.index,
        live=setup.live,
        config=setup.tagger.facts_config,
        on_error=lambda request, exc: errors.append((request.source, repr(exc))),
        joint=joint,
    )
    return out, errors


def test_joint_validation_equals_validating_each_batch_after_the_others(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _group(setup)
    calls: list[int] = []
    real = checking.validate_events

    def counted(raws: Any, **kwargs: Any) -> Any:
        # Records validated per call (each table ends with two sentinel rows).
        calls.append(sum(len(r.data) - 2 + len(r.malformed) for r in raws))
        return real(raws, **kwargs)

    monkeypatch.setattr(checking, "validate_events", counted)
    alone, alone_errors = _run(setup, group, joint=False)
    assert len(calls) == len(group)
    alone_calls = list(calls)
    calls.clear()
    joint, joint_errors = _run(setup, group, joint=True)
    # a, b and the bad batch share no customer: one call; the repeats of a start a run.
    assert calls[0] == sum(alone_calls[:3])
    assert len(calls) < len(group)
    assert joint_errors == alone_errors == []
    assert [c.request.source for c in joint] == [r.source for r in group]
    for j, a in zip(joint, alone, strict=True):
        pd.testing.assert_frame_equal(j.accepted, a.accepted)
        assert j.ids == a.ids
        assert j.counts == a.counts
        assert j.repeats == a.repeats
        if len(a.quarantine):
            pd.testing.assert_frame_equal(j.quarantine, a.quarantine)
        else:  # an empty frame's column dtypes depend on what else was validated
            assert j.quarantine.empty
            assert list(j.quarantine.columns) == list(a.quarantine.columns)
    # What the batches were made to show.
    assert joint[2].counts == {
        "bad_timestamp": 1,
        "unknown_event_type": 1,
        "unknown_customer": 1,
        "malformed_row": 2,
    }
    assert set(joint[2].quarantine["source_file"]) == {"POST /events (two)"}
    assert sorted(joint[2].quarantine["line_number"]) == [1, 2, 3, 4, 5]
    # Each rejected row's original text is its record's JSON (rendered for it alone).
    for row in joint[2].quarantine.itertuples():
        assert json.loads(row.original_line) == group[2].records[row.line_number - 1]
    assert (len(joint[3].repeats), joint[3].counts) == (2, {"duplicate": 1})
    assert joint[5].counts == {"future_event": 1}


def test_a_batch_failing_validation_alone_gets_its_error_and_the_others_go_on(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _group(setup)[:3]
    real = checking.validate_events

    def failing(raws: Any, **kwargs: Any) -> Any:
        if any("(two)" in str(r.path) for r in raws):
            raise RuntimeError("boom")
        return real(raws, **kwargs)

    monkeypatch.setattr(checking, "validate_events", failing)
    out, errors = _run(setup, group, joint=True)
    assert [c.request.source for c in out] == ["POST /events (one)", "POST /events (one)"]
    assert errors == [("POST /events (two)", "RuntimeError('boom')")]


def _assert_same(joint: list[Checked], alone: list[Checked]) -> None:
    assert [c.request.source for c in joint] == [c.request.source for c in alone]
    for j, a in zip(joint, alone, strict=True):
        pd.testing.assert_frame_equal(j.accepted, a.accepted)
        assert (j.ids, j.counts, j.repeats) == (a.ids, a.counts, a.repeats)
        if len(a.quarantine):
            pd.testing.assert_frame_equal(j.quarantine, a.quarantine)
        else:
            assert j.quarantine.empty


def _counted_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = checking.validate_events

    def counted(raws: Any, **kwargs: Any) -> Any:
        calls.append(sum(len(r.data) - 2 + len(r.malformed) for r in raws))
        return real(raws, **kwargs)

    monkeypatch.setattr(checking, "validate_events", counted)
    return calls


def test_batches_sharing_customers_at_other_times_are_validated_in_one_call(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every customer's events spread over several batches (a busy POST /events), none
    # at the same instant as another batch's: one call, the results of one by one.
    batch = records(setup.later)[:60]
    group = [_Req(batch[k::4], f"POST /events ({k})") for k in range(4)]
    named = [{str(r["customer_id"]) for r in g.records} for g in group]
    assert any(named[0] & other for other in named[1:])  # they do share customers
    calls = _counted_calls(monkeypatch)
    alone, _ = _run(setup, group, joint=False)
    calls.clear()
    joint, errors = _run(setup, group, joint=True)
    assert errors == []
    assert calls == [len(batch)]
    _assert_same(joint, alone)


def test_a_row_repeated_across_batches_is_judged_as_if_the_earlier_batch_were_stored(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = records(setup.later)
    with_order = next(r for r in batch if r.get("order_id"))
    without = next(
        r for r in batch if not r.get("order_id") and r["customer_id"] != with_order["customer_id"]
    )
    others = [
        r
        for r in batch
        if r["customer_id"] not in (with_order["customer_id"], without["customer_id"])
    ][:6]
    group = [
        _Req([with_order, *others[:3]], "POST /events (a)"),
        _Req([without, *others[3:]], "POST /events (b)"),
        # An identical row without an order id: a second event within one table, a
        # duplicate of a stored one; validated one by one, the latter.
        _Req([{**without, "event_id": "again-without"}], "POST /events (c)"),
        # An identical row with an order id: a duplicate either way, but "of an earlier
        # row in this import" in one table and "of an event already stored" one by one.
        _Req([{**with_order, "event_id": "again-with"}], "POST /events (d)"),
    ]
    calls = _counted_calls(monkeypatch)
    alone, _ = _run(setup, group, joint=False)
    calls.clear()
    joint, errors = _run(setup, group, joint=True)
    assert errors == []
    _assert_same(joint, alone)
    assert joint[2].counts == joint[3].counts == {"duplicate": 1}
    assert len(joint[2].accepted) == len(joint[3].accepted) == 0
    # One call over all four; (c) conflicts with (b) (the row accepted in both): (c)
    # and (d) again, after (a) and (b), in one more call.
    assert calls == [sum(len(g.records) for g in group), 2]


def test_without_the_conflict_check_the_repeats_would_be_judged_otherwise(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check is what makes the test above pass: joined blindly, (c)'s row is kept.
    monkeypatch.setattr(checking, "_first_conflict", lambda *_args: None)
    batch = records(setup.later)
    without = next(r for r in batch if not r.get("order_id"))
    group = [
        _Req([without], "POST /events (b)"),
        _Req([{**without, "event_id": "again-without"}], "POST /events (c)"),
    ]
    alone, _ = _run(setup, group, joint=False)
    joint, _ = _run(setup, group, joint=True)
    assert alone[1].counts == {"duplicate": 1}
    assert joint[1].counts == {}
