"""StoredKeys: stored events sharing a (customer, time) pair with new rows, across files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.crypto import EncryptionKeys, generate_key
from features.schema import EVENT_COLUMNS, arrow_table, events_frame
from features.store_files import StoredKeys


def _events(n: int, first_minute: int) -> pa.Table:
    rng = np.random.default_rng(first_minute)
    minutes = first_minute + np.arange(n)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in rng.integers(0, 500, n)],
            "occurred_at": pd.Timestamp("2021-01-01") + pd.to_timedelta(minutes, unit="min"),
            "event_type": "browse",
        }
    )
    return arrow_table(events_frame(frame))


@pytest.mark.parametrize("sealed", [False, True])
def test_matching_rows_come_from_the_right_file_and_row(tmp_path: Path, sealed: bool) -> None:
    keys = EncryptionKeys.from_text(generate_key(), source="test key") if sealed else None
    tables = [_events(n, start) for n, start in ((120_000, 0), (7, 200_000), (90_000, 300_000))]
    paths = []
    for number, table in enumerate(tables):
        path = tmp_path / f"events-{number}.parquet"
        # Many small row groups: DuckDB reads them on several threads.
        if keys is None:
            pq.write_table(table, path, row_group_size=5_000)
        else:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, row_group_size=5_000)
            path.write_bytes(keys.seal(sink.getvalue().to_pybytes()))
        paths.append(path)
    picks = [(0, 0), (0, 77_777), (0, 119_999), (1, 3), (2, 0), (2, 45_001), (2, 89_999)]
    wanted = pa.concat_tables(tables[f].slice(r, 1) for f, r in picks)
    with StoredKeys(paths, keys) as stored:
        found = stored.matching(wanted.select(["customer_id", "occurred_at"]))
        again = stored.matching(wanted.slice(3, 2))
    assert found is not None
    assert again is not None
    assert found.select(list(EVENT_COLUMNS)).to_pylist() == wanted.to_pylist()
    assert again.select(list(EVENT_COLUMNS)).to_pylist() == wanted.slice(3, 2).to_pylist()
