"""Appending imports: new events become segments once the store is big, every reader sees
them, re-imports stay idempotent, and too many segments are compacted.

The stores here are tiny, so ``segment_min_rows`` is lowered to 1 (the default only
starts appending at a million stored events, where rewriting the file costs seconds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.importer import import_facts
from features.schema import FactsConfig, arrow_table
from features.store import FactStore
from tests.features.facts_helpers import DATA, NOW


def _store(root: Path, **kwargs: int) -> FactStore:
    return FactStore(root / "facts", segment_min_rows=1, **kwargs)


def _import(store: FactStore, root: Path, **files: Path) -> int:
    report = import_facts(
        store, config=FactsConfig(), quarantine_dir=root / "quarantine", now=NOW, **files
    )
    return report.events_added


def _events_file(path: Path, rows: list[str]) -> Path:
    path.write_text("customer_id,occurred_at,event_type,amount\n" + "\n".join(rows) + "\n")
    return path


def _key(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return sorted(
        zip(
            frame["customer_id"].astype(str),
            frame["occurred_at"].astype(str),
            frame["event_type"].astype(str),
            strict=True,
        )
    )


def test_append_writes_a_segment_that_every_reader_sees(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    base_bytes = store.events_path.read_bytes()
    fingerprint = store.fingerprint()
    more = _events_file(
        tmp_path / "more.csv",
        ["c1,2021-05-01T10:00:00,purchase,5", "c2,2021-05-02T10:00:00,login,"],
    )
    assert _import(store, tmp_path, events=more) == 2
    # The events file was not rewritten: the new events are one segment.
    assert store.events_path.read_bytes() == base_bytes
    assert len(store.segment_paths()) == 1
    assert store.fingerprint() != fingerprint
    events = store.load_events()
    assert len(events) == 8
    assert ("c1", "2021-05-01 10:00:00+00:00", "purchase") in _key(events)
    assert store.events_table().num_rows == 8
    one_customer = store.load_customer("c1")[1]
    assert "2021-05-01 10:00:00+00:00" in set(one_customer["occurred_at"].astype(str))
    manifest = store.manifest()
    assert manifest["events"] == 8
    assert manifest["last_event_at"].startswith("2021-05-02T10:00:00")
    assert sum(manifest["event_types"].values()) == 8


def test_reimport_onto_segments_adds_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    more = _events_file(
        tmp_path / "more.csv",
        ["c1,2021-05-01T10:00:00,purchase,5", "c1,2021-05-01T10:00:00,purchase,5"],
    )
    assert _import(store, tmp_path, events=more) == 2  # no order id: two purchases
    before = (store.fingerprint(), _key(store.load_events()), store.segment_paths())
    assert _import(store, tmp_path, events=more) == 0
    assert _import(store, tmp_path, events=DATA / "events.csv") == 0
    assert (store.fingerprint(), _key(store.load_events()), store.segment_paths()) == before


def test_too_many_segments_are_compacted_into_the_events_file(tmp_path: Path) -> None:
    store = _store(tmp_path, max_segments=2)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    for day in range(1, 5):
        rows = [f"c2,2021-05-0{day}T10:00:00,login,"]
        _import(store, tmp_path, events=_events_file(tmp_path / f"d{day}.csv", rows))
        assert len(store.segment_paths()) <= 2
    # Four appends, two segments allowed: the third compacted, the fourth appended.
    assert len(store.segment_paths()) == 1
    assert len(store.load_events()) == 10
    assert store.manifest()["events"] == 10


def test_erase_folds_segments_away(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    more = _events_file(tmp_path / "more.csv", ["c1,2021-05-01T10:00:00,purchase,5"])
    _import(store, tmp_path, events=more)
    assert store.erase(["c1"], now=NOW)[1] >= 1
    assert store.segment_paths() == []
    assert "c1" not in set(store.load_events()["customer_id"].astype(str))


@pytest.mark.parametrize("crash_after", ["segment", "journal"])
def test_a_failed_append_leaves_the_store_as_it_was_or_rolls_forward(
    tmp_path: Path, crash_after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    before = _key(store.load_events())
    more = _events_file(tmp_path / "more.csv", ["c1,2021-05-01T10:00:00,purchase,5"])
    import features.store_files as store_module  # where the store's files are written

    if crash_after == "segment":
        real = store_module.write_parquet
        calls = []

        def failing(*args: object, **kwargs: object) -> None:
            calls.append(1)
            if len(calls) == 2:  # customers written, then the segment fails
                raise OSError("disk full")
            real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store_module, "write_parquet", failing)
        with pytest.raises(OSError, match="disk full"):
            _import(store, tmp_path, events=more)
        monkeypatch.undo()
        assert _key(store.load_events()) == before
        assert store.segment_paths() == []
        assert not list(store.facts_dir.glob("*.tmp-*"))
    else:
        real_roll = FactStore._roll_forward
        monkeypatch.setattr(FactStore, "_roll_forward", lambda self, journal: None)
        _import(store, tmp_path, events=more)
        monkeypatch.setattr(FactStore, "_roll_forward", real_roll)
        # The journal was committed: the next reader finishes the renames.
        assert len(_store(tmp_path).load_events()) == len(before) + 1


def test_events_matching_returns_exactly_the_stored_rows_of_those_keys(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _import(store, tmp_path, customers=DATA / "customers.csv", events=DATA / "events.csv")
    more = _events_file(
        tmp_path / "more.csv",
        ["c1,2021-05-01T10:00:00,purchase,5", "c1,2021-05-01T10:00:00,refund,5"],
    )
    _import(store, tmp_path, events=more)
    everything = store.load_events()
    wanted = everything.iloc[[0, len(everything) - 1]][["customer_id", "occurred_at"]]
    found = store.events_matching(arrow_table(wanted))
    assert found is not None
    expected = everything.merge(wanted.drop_duplicates(), on=["customer_id", "occurred_at"])
    assert _key(found.to_pandas()) == _key(expected)
    nothing = arrow_table(
        pd.DataFrame(
            {
                "customer_id": pd.Series(["nobody"], dtype="string"),
                "occurred_at": pd.Series([NOW]).astype("datetime64[us, UTC]"),
            }
        )
    )
    empty = store.events_matching(nothing)
    assert empty is not None
    assert empty.num_rows == 0
    assert FactStore(tmp_path / "empty").events_matching(nothing) is None
