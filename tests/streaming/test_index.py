"""The in-memory index real-time tagging reads: every event of a customer, once, however
the live events arrived (this process's batches, other writers' segments, many small
batches merged into blocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import EVENT_COLUMNS
from streaming.index import CustomerFacts
from tests.streaming.conftest import T0, Setup


def _key(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    cols = ["customer_id", "occurred_at", "event_type", "amount"]
    rows = frame[cols].astype({"customer_id": str, "event_type": str, "amount": float})
    return sorted(rows.fillna(-1.0).itertuples(index=False, name=None))


def test_events_of_equals_stored_plus_live_events_after_many_small_batches(setup: Setup) -> None:
    index = CustomerFacts(setup.store, setup.live)
    index.refresh()
    rng = np.random.default_rng(4)
    # Live events: stored ones replayed at random moments of the live day.
    stored = setup.store.load_events()
    later = stored.iloc[rng.choice(len(stored), size=400, replace=False)].reset_index(drop=True)
    later["occurred_at"] = T0 + pd.to_timedelta(rng.integers(0, 86_000, size=400), unit="s")
    cuts = np.sort(rng.choice(np.arange(1, len(later)), size=40, replace=False))
    pieces = np.split(np.arange(len(later)), cuts)
    ids = [f"x{i}" for i in range(len(later))]
    for k, rows in enumerate(pieces):
        batch = later.iloc[rows].reset_index(drop=True)
        appended = setup.live.append(batch, [ids[i] for i in rows])
        if k % 3 == 0:
            index.refresh()  # read as another writer's segment
        elif k % 3 == 1:
            index.add(batch, appended.segment)  # this process's own batch, as a frame
        else:
            assert appended.table is not None  # ... and as the segment's own table
            index.add(appended.table, appended.segment)
    index.refresh()
    stored = setup.store.load_events()
    # Merged into blocks of geometric sizes, not one block per batch.
    assert len(index._live) <= np.log2(len(later)) + 1
    everyone = sorted(set(stored["customer_id"].astype(str)) | set(later["customer_id"]))
    for chosen in (everyone[:1], everyone[::7], everyone):
        got = index.events_of(chosen)
        assert list(got.columns) == list(EVENT_COLUMNS)
        want = pd.concat(
            [
                stored[stored["customer_id"].astype(str).isin(chosen)],
                later[later["customer_id"].astype(str).isin(chosen)],
            ]
        )
        assert _key(got) == _key(want)
    # A fresh index (a restarted process) reads the same from the segments.
    fresh = CustomerFacts(setup.store, setup.live)
    fresh.refresh()
    assert _key(fresh.events_of(everyone)) == _key(index.events_of(everyone))


def test_customers_of_equals_the_stored_rows_in_the_order_asked(setup: Setup) -> None:
    index = CustomerFacts(setup.store, setup.live)
    index.refresh()
    stored = setup.store.load_customers().reset_index(drop=True)
    ids = stored["customer_id"].astype(str).tolist()
    wanted = [ids[5], "nobody", ids[0], ids[-1], ids[5]]
    got = index.customers_of(wanted)
    by_id = stored.set_index(stored["customer_id"].astype(str))
    want = by_id.loc[[ids[5], ids[0], ids[-1], ids[5]]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(index.customers_of([])) == 0
    assert list(index.customers_of([]).dtypes) == list(stored.dtypes)
    # Only some columns (validation's two): the same values and dtypes, in that order.
    two = ["signup_at", "customer_id"]
    pd.testing.assert_frame_equal(index.customers_of(wanted, two), want[two])
    assert list(index.customers_of([], two).dtypes) == list(stored[two].dtypes)


def test_a_micro_batchs_listings_build_no_path_per_stored_segment(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments accumulate, one per micro-batch, until a batch run: the index's and the
    id log's look for new segments compare names (~0.5 us a segment), never a ``Path``
    per stored segment (~5 us: 45 ms a listing at 5,000 segments, three a micro-batch)."""
    index = CustomerFacts(setup.store, setup.live)
    index.refresh()
    stored = setup.store.load_events().iloc[:30].reset_index(drop=True)
    for k in range(30):
        setup.live.append(stored.iloc[[k]], [f"p{k}"])
    index.refresh()
    made: list[str] = []
    real = type(setup.live.directory).__truediv__

    def counted(self: Path, other: str) -> Path:
        made.append(str(other))
        return real(self, other)

    monkeypatch.setattr(type(setup.live.directory), "__truediv__", counted)
    other = stored.iloc[[0]].assign(customer_id=stored["customer_id"].iloc[1])
    appended = setup.live.append(other, ["p-new"])  # another segment
    assert appended.segment is not None
    made.clear()
    index.refresh()  # reads the one new segment
    assert setup.live.known(["p-new", "p0", "nope"]).tolist() == [True, True, False]
    segments = [m for m in made if m.startswith("seg-")]
    assert segments == [appended.segment.name], segments
