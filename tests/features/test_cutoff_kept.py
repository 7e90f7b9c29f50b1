"""A cutoff of a few customers keeps each type's starts and days since the last event
for its several readers (read-only, so no reader can change another's input); a long
build's cutoff computes them per reader. Both give the same values and features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.families.base as base
from features.events import prepare_events
from features.families.base import Cutoff
from synthetic import generate


def test_kept_arrays_are_shared_read_only_and_equal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = generate(40, start="2024-01-01", end="2024-09-30", seed=3)
    prep = prepare_events(data.customers, data.events)
    cut_us = pd.Timestamp("2024-09-01", tz="UTC").value // 1000
    codes = np.arange(prep.n_customers, dtype=np.int64)
    kept = Cutoff(prep, cut_us, codes)
    since, start = kept.days_since_last("purchase"), kept.start("purchase")
    assert kept.days_since_last("purchase") is since
    assert kept.start("purchase") is start
    with pytest.raises(ValueError, match="read-only"):
        since[0] = 1.0
    monkeypatch.setattr(base, "KEEP_ROWS", 0)
    apart = Cutoff(prep, cut_us, codes)
    fresh = apart.days_since_last("purchase")
    assert fresh is not apart.days_since_last("purchase")
    assert fresh.flags.writeable
    np.testing.assert_array_equal(fresh, since)
    np.testing.assert_array_equal(apart.start("purchase"), start)


def test_features_are_the_same_kept_or_not(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = generate(60, start="2024-01-01", end="2024-09-30", seed=4)
    cutoffs = ["2024-05-01", "2024-09-01"]
    kept = prepare_events(data.customers, data.events).build_features(cutoffs)
    monkeypatch.setattr(base, "KEEP_ROWS", 0)
    apart = prepare_events(data.customers, data.events).build_features(cutoffs)
    pd.testing.assert_frame_equal(kept, apart)
