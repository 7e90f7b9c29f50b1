from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from features.build import build_features
from features.live import LiveEventLog
from features.schema import ReasonCode
from scoring.batch import run_tagging
from streaming.tagger import live_as_of
from tags.engine import evaluate_tags
from tags.live import live_rows
from tags.transitions import TransitionLog
from tests.streaming.conftest import NOW, FakeChurn, Setup, records


def _send_queued_together(setup: Setup, send: Callable[[int], None], n: int) -> None:
    """Run ``send(0)`` .. ``send(n - 1)`` in threads, each queued before the next starts.

    The tagger is held busy meanwhile, so the n requests wait in its queue together
    (one micro-batch); then every thread is waited for.
    """
    with setup.tagger._lock:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(n)]
        for k, t in enumerate(threads):  # queued in this order
            t.start()
            deadline = time.monotonic() + 30
            while len(setup.tagger._queue) <= k and time.monotonic() < deadline:
                time.sleep(0.005)
    for t in threads:
        t.join(timeout=120)


def test_events_are_stored_once_and_retag_their_customers(setup: Setup) -> None:
    batch = records(setup.later)
    n = len(batch)
    assert n > 10
    first = setup.tagger.apply(batch, source="POST /events")
    assert (first.accepted, first.duplicates) == (n, 0)
    assert first.customers == setup.later["customer_id"].nunique()
    assert len(setup.live.load_events()) == n
    again = setup.tagger.apply(batch, source="POST /events")
    assert (again.accepted, again.duplicates) == (0, n)
    assert again.changes == 0
    assert len(setup.live.load_events()) == n
    with setup.tags.reader() as con:
        live = live_rows(con)
    assert set(live["customer_id"]) == set(setup.later["customer_id"])


def test_bad_events_get_the_file_import_reason_codes(setup: Setup) -> None:
    cid = str(setup.later["customer_id"].iloc[0])
    batch = [
        {
            "event_id": "a",
            "customer_id": cid,
            "occurred_at": "2024-10-01T10:00:00Z",
            "event_type": "purchase",
        },
        {
            "event_id": "b",
            "customer_id": "nobody",
            "occurred_at": "2024-10-01T10:00:00Z",
            "event_type": "login",
        },
        {"event_id": "c", "customer_id": cid, "occurred_at": "yesterday", "event_type": "login"},
        {
            "event_id": "d",
            "customer_id": cid,
            "occurred_at": "2024-10-01T10:00:00Z",
            "event_type": "teleport",
        },
        {
            "event_id": "e",
            "customer_id": cid,
            "occurred_at": "2024-10-01T11:00:00Z",
            "event_type": "purchase",
            "amount": -5,
        },
        {
            "event_id": "f",
            "customer_id": cid,
            "occurred_at": "2031-01-01T00:00:00Z",
            "event_type": "login",
        },
        ["not", "an", "object"],
        {
            "event_id": "g",
            "customer_id": cid,
            "occurred_at": "2024-10-01T12:00:00Z",
            "event_type": "login",
            "colour": "red",
        },
        {
            "event_id": "h",
            "customer_id": cid,
            "occurred_at": "2024-10-01T12:00:00Z",
            "event_type": "login",
        },
    ]
    result = setup.tagger.apply(batch, source="POST /events")
    assert result.accepted == 1
    assert result.quarantined == {
        ReasonCode.MISSING_AMOUNT.value: 1,
        ReasonCode.UNKNOWN_CUSTOMER.value: 1,
        ReasonCode.BAD_TIMESTAMP.value: 1,
        ReasonCode.UNKNOWN_EVENT_TYPE.value: 1,
        ReasonCode.NEGATIVE_AMOUNT.value: 1,
        ReasonCode.FUTURE_EVENT.value: 1,
        ReasonCode.MALFORMED_ROW.value: 2,
    }
    assert result.quarantine_file is not None
    quarantine = pd.read_csv(result.quarantine_file)
    assert len(quarantine) == 8
    assert set(quarantine["source_file"]) == {"POST /events"}
    # An all-bad batch is quarantined, not refused.
    worse = setup.tagger.apply([batch[1]], source="POST /events")
    assert worse.accepted == 0
    assert worse.quarantined == {"unknown_customer": 1}


def test_changes_are_recorded_as_live_transitions(setup: Setup) -> None:
    log = TransitionLog(setup.tags)
    before = log.last_seq()
    result = setup.tagger.apply(records(setup.later), source="nats:events.shop")
    assert result.changes > 0
    groups = log.groups(before)
    assert [g.source for g in groups] == ["live"]
    assert groups[0].n == result.changes


def test_live_tags_equal_a_batch_run_at_the_same_instant(setup: Setup) -> None:
    """Parity: stream a day of events for every customer; live == batch at the same as-of.

    Population-dependent tags (RFM medians, value tiers) use the last batch run's
    thresholds live, so they are compared with the batch evaluated on those thresholds.
    """
    stream = setup.later.sort_values("occurred_at", kind="stable")
    sample = stream["customer_id"].drop_duplicates().head(40)
    stream = stream[stream["customer_id"].isin(sample)]
    batch = records(stream)
    for start in range(0, len(batch), 25):  # micro-batches, as a stream delivers them
        setup.tagger.apply(batch[start : start + 25], source="nats:events.shop")
    as_of = live_as_of(NOW)
    with setup.tags.reader() as con:
        live = live_rows(con, customers=list(sample))
    live = live.dropna(subset=["value"])
    thresholds = dict(setup.tags.run_info().meta["thresholds"])
    run_tagging(
        facts=setup.facts,
        catalogue=setup.catalogue,
        store=setup.tags,
        as_of=as_of,
        predictors=[FakeChurn()],
    )
    batch_rows = setup.tags.snapshot(as_of, customers=list(sample))
    pinned_tags = set(thresholds)
    assert pinned_tags >= {"rfm_segment", "value_tier"}
    key = ["customer_id", "tag_id"]

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[["customer_id", "tag_id", "value", "score"]].astype(
            {"customer_id": str, "tag_id": str, "value": str}
        )
        return out.sort_values(key, ignore_index=True)

    plain_live = table(live[~live["tag_id"].isin(pinned_tags)])
    plain_batch = table(batch_rows[~batch_rows["tag_id"].isin(pinned_tags)])
    pd.testing.assert_frame_equal(plain_live, plain_batch, check_dtype=False)

    # The same customers over the whole population at the same as-of, on T0's thresholds.
    events = setup.facts.load_events()
    features = build_features(setup.facts.load_customers(), events, as_of=as_of)
    pinned = evaluate_tags(
        features,
        events,
        setup.catalogue,
        as_of=as_of,
        tag_ids=sorted(pinned_tags),
        thresholds=thresholds,
    )
    pinned = pinned[pinned["customer_id"].astype(str).isin(set(sample))]
    pd.testing.assert_frame_equal(
        table(live[live["tag_id"].isin(pinned_tags)]), table(pinned), check_dtype=False
    )


def test_batches_arriving_together_are_one_micro_batch_with_their_own_answers(
    setup: Setup,
) -> None:
    """Group commit: batches that queue while one is tagged are applied together (one
    segment, one re-tag), and each caller still gets its own counts."""
    batch = records(setup.later)
    assert len(batch) >= 20
    parts = [batch[i : i + 5] for i in range(0, 20, 5)]
    parts.append([*batch[:3], {**batch[0], "event_id": "other-id"}])  # repeats + a row twin
    parts.append([{"customer_id": "nobody", "occurred_at": NOW.isoformat(), "event_type": "login"}])
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            results[k] = setup.tagger.apply(parts[k], source=f"POST /events ({k})")
        except BaseException as exc:  # reported below
            errors.append(exc)

    _send_queued_together(setup, send, len(parts))
    assert not errors, errors
    assert {r.batches for r in results.values()} == {len(parts)}  # one micro-batch
    assert len(setup.live.segments()) == 1
    for k in range(4):
        assert (results[k].accepted, results[k].duplicates) == (5, 0)
        assert results[k].customers == len({str(r["customer_id"]) for r in parts[k]})
        assert set(results[k].rows["customer_id"]) == {str(r["customer_id"]) for r in parts[k]}
    # Stored by batch 0 of the same micro-batch: duplicates, as if sent after it; the
    # twin under another id is the file import's duplicate row.
    assert (results[4].accepted, results[4].duplicates) == (0, 3)
    assert results[4].quarantined == {"duplicate": 1}
    assert results[5].quarantined == {"unknown_customer": 1}
    assert len(setup.live.load_events()) == 20


def test_a_batch_stored_but_never_tagged_is_tagged_when_a_tagger_starts(setup: Setup) -> None:
    # What a process killed between storing a batch and writing its tags leaves behind.
    appended = setup.live.append(setup.later, [f"k{i}" for i in range(len(setup.later))])
    assert appended.segment is not None
    assert appended.stored.all()
    touched = sorted(set(setup.later["customer_id"].astype(str)))
    with setup.tags.reader() as con:
        assert len(live_rows(con, customers=touched)) == 0
    assert setup.tagger.recover() == len(touched)
    with setup.tags.reader() as con:
        assert set(live_rows(con)["customer_id"].astype(str)) == set(touched)
    # The live values are what the stored events imply; the segment is not tagged again.
    write, _ = setup.tagger.retag(touched, as_of=live_as_of(NOW), at=NOW)
    assert write.group.n == 0
    assert setup.tagger.recover() == 0


def test_an_applied_batch_leaves_nothing_to_recover(setup: Setup) -> None:
    result = setup.tagger.apply(records(setup.later), source="POST /events")
    assert result.accepted == len(setup.later)
    assert setup.tagger.recover() == 0


def test_superseded_live_rows_are_compacted_in_the_background(setup: Setup) -> None:
    batch = records(setup.later)
    setup.tagger.apply(batch[:20], source="POST /events")
    setup.tagger.compact_after = 1  # every re-tag of a live customer crosses it
    with setup.tags.reader() as con:
        before = live_rows(con)
    # The same customers again, with new events: their rows are appended, then compacted.
    shifted = setup.later.iloc[:20].copy()
    shifted["occurred_at"] = shifted["occurred_at"] + pd.Timedelta(seconds=1)
    shifted["order_id"] = None
    result = setup.tagger.apply(records(shifted), source="POST /events")
    assert result.accepted == 20
    deadline = time.monotonic() + 30
    while setup.tagger._live_state.superseded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert setup.tagger._live_state.superseded == 0
    with setup.tags.reader() as con:
        after = live_rows(con)
        stored = con.execute("SELECT count(*) FROM live_tags").fetchone()
    # One row per (customer, tag) left, the newest: the same values, a newer seq.
    assert stored is not None
    assert stored[0] == len(after) == len(before)
    key = ["customer_id", "tag_id"]
    merged = before.merge(after, on=key, suffixes=("_0", "_1"))
    assert len(merged) == len(before)
    assert (merged["seq_1"] > merged["seq_0"]).all()


def test_close_waits_for_a_background_compaction(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction still running at exit would be cut inside DuckDB (the process aborts):
    close() waits for it."""
    batch = records(setup.later)
    setup.tagger.apply(batch[:20], source="POST /events")
    setup.tagger.compact_after = 1
    compact = setup.tagger.compact

    def slow_compact() -> int:
        time.sleep(0.5)
        return compact()

    monkeypatch.setattr(setup.tagger, "compact", slow_compact)
    shifted = setup.later.iloc[:20].copy()
    shifted["occurred_at"] = shifted["occurred_at"] + pd.Timedelta(seconds=1)
    shifted["order_id"] = None
    setup.tagger.apply(records(shifted), source="POST /events")
    assert setup.tagger._live_state.superseded > 0  # the compaction is asleep
    setup.tagger.close()
    assert setup.tagger._live_state.superseded == 0
    assert setup.tagger._compactor is not None
    assert not setup.tagger._compactor.is_alive()


def test_listeners_get_each_micro_batch_once_in_write_order(setup: Setup) -> None:
    """A subscribed reader (the service's overlay) gets every live write's rows once per
    micro-batch; the callers then get their customers but no rows of their own."""
    got: list[pd.DataFrame] = []
    setup.tagger.subscribe(got.append)
    batch = records(setup.later)
    parts = [batch[i : i + 5] for i in range(0, 15, 5)]
    results: dict[int, Any] = {}

    def send(k: int) -> None:
        results[k] = setup.tagger.apply(parts[k], source=f"POST /events ({k})")

    _send_queued_together(setup, send, len(parts))
    assert len(got) == 1
    everyone = {str(r["customer_id"]) for p in parts for r in p}
    assert set(got[0]["customer_id"]) == everyone
    assert len(got[0]) == len(everyone) * len(setup.tagger.tags)
    for k, part in enumerate(parts):
        assert results[k].batches == 3
        assert set(results[k].customer_ids) == {str(r["customer_id"]) for r in part}
        assert len(results[k].rows) == 0
    later = setup.tagger.apply(records(setup.later.iloc[15:20]), source="POST /events")
    assert len(got) == 2
    assert (got[1]["seq"] > got[0]["seq"].max()).all()
    assert set(got[1]["customer_id"]) == set(later.customer_ids)


def test_recover_catches_up_with_another_writer_before_the_first_micro_batch(
    setup: Setup,
) -> None:
    """A consumer starting after another process wrote a day of events reads their
    segments' ids and live rows at start-up (``recover``), not in its first micro-batch
    (the first NATS probe of the 1M benchmark waited 1.3-2.4 s for that)."""
    from streaming.tagger import LiveTagger

    setup.tagger.warm()
    other = LiveTagger(
        facts=setup.store,
        live=LiveEventLog(setup.live.directory),
        tag_store=setup.tags,
        catalogue=setup.catalogue,
        spec=setup.tagger.spec,
        facts_config=setup.tagger.facts_config,
        predictors=setup.tagger.predictors,
        quarantine_dir=setup.root / "quarantine-other",
        clock=lambda: NOW,
    )
    written = other.apply(records(setup.later.iloc[:30]), source="another process")
    other.close()
    setup.tagger.recover()
    assert setup.tagger._live_state.seq == written.seq
    assert set(setup.live.segment_names()) <= setup.tagger.live._read
