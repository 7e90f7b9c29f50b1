"""The feature snapshot store: one Parquet file per as-of date, with its lineage.

Layout of ``features_dir``::

    features_20240101T000000Z.parquet   features as of 2024-01-01T00:00:00Z

Each file carries its metadata in the Parquet schema (key ``tagsmith``): ``as_of``,
``spec_hash``, ``facts_fingerprint``, ``created_at``, row and column counts. A file is
written next to its target and renamed into place, so a failed or killed build leaves
the previous snapshot of that date current.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features.crypto import EncryptionKeys, parquet_source, read_parquet_schema, write_parquet
from features.cutoffs import AsOf, normalize_as_of
from features.erasure import scrub_parquet
from features.errors import StoreError

__all__ = ["FeatureStore"]

_PREFIX = "features_"
_META_KEY = b"tagsmith"


def _stamp(as_of: pd.Timestamp) -> str:
    return as_of.strftime("%Y%m%dT%H%M%SZ")


class FeatureStore:
    """Feature snapshots of one project under ``features_dir``."""

    def __init__(self, features_dir: Path, *, keys: EncryptionKeys | None = None) -> None:
        self.features_dir = Path(features_dir)
        # With keys, snapshots are written sealed (features.crypto).
        self.keys = keys

    def path_for(self, as_of: AsOf) -> Path:
        """The snapshot file of ``as_of``."""
        return self.features_dir / f"{_PREFIX}{_stamp(normalize_as_of(as_of))}.parquet"

    def write(
        self,
        frame: pd.DataFrame,
        *,
        as_of: AsOf,
        spec_hash: str,
        facts_fingerprint: str,
        created_at: pd.Timestamp,
    ) -> Path:
        """Write the features of one cutoff atomically; returns the snapshot path.

        Raises:
            StoreError: ``frame`` has an ``as_of`` column for another date.
        """
        ts = normalize_as_of(as_of)
        if "as_of" in frame.columns:
            other = frame["as_of"][frame["as_of"] != ts]
            if len(other):
                raise StoreError(
                    f"Expected features as of {ts.isoformat()} only. "
                    f"Got rows as of {other.iloc[0].isoformat()}."
                )
            frame = frame.drop(columns="as_of")
        meta = {
            "as_of": ts.isoformat(),
            "spec_hash": spec_hash,
            "facts_fingerprint": facts_fingerprint,
            "created_at": pd.Timestamp(created_at).isoformat(),
            "rows": len(frame),
            "features": frame.shape[1] - 1,
        }
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode("utf-8")}
        )
        self.features_dir.mkdir(parents=True, exist_ok=True)
        target = self.path_for(ts)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=self.features_dir)
        os.close(fd)
        try:
            write_parquet(table, tmp_name, self.keys, compression="zstd")
            os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return target

    def erase(self, customer_ids: Collection[str]) -> int:
        """Rewrite every snapshot without the customers' rows; returns rows removed."""
        if not self.features_dir.is_dir():
            return 0
        return sum(
            scrub_parquet(p, customer_ids, self.keys)
            for p in sorted(self.features_dir.glob("*.parquet"))
        )

    def meta(self, as_of: AsOf) -> dict[str, Any]:
        """Metadata of the snapshot of ``as_of``.

        Raises:
            StoreError: There is no snapshot of that date.
        """
        return _read_meta(self._existing(as_of), self.keys)

    def read(self, as_of: AsOf | None = None, *, customer_id: str | None = None) -> pd.DataFrame:
        """The snapshot of ``as_of`` (default: the latest), optionally one customer's row.

        Raises:
            StoreError: There is no such snapshot.
        """
        path = self._existing(as_of) if as_of is not None else self._latest()
        filters = [("customer_id", "==", customer_id)] if customer_id is not None else None
        frame = pd.read_parquet(parquet_source(path, self.keys), filters=filters)
        for name in frame.columns:
            dtype = frame[name].dtype
            # A category feature whose fact is missing for everyone has no categories,
            # which Parquet reads back as object ones: restore the built frame's dtype.
            if isinstance(dtype, pd.CategoricalDtype) and not len(dtype.categories):
                frame[name] = frame[name].cat.set_categories(pd.Index([], dtype="str"))
        return frame

    def snapshots(self) -> pd.DataFrame:
        """One row per snapshot: as_of, rows, features, spec_hash, facts_fingerprint, ..."""
        rows = [
            _read_meta(p, self.keys) for p in sorted(self.features_dir.glob(f"{_PREFIX}*.parquet"))
        ]
        columns = ["as_of", "rows", "features", "spec_hash", "facts_fingerprint", "created_at"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
        return frame.sort_values("as_of", ignore_index=True)

    def latest_as_of(self) -> pd.Timestamp | None:
        """The latest snapshot's as_of, or ``None`` when there is none."""
        snaps = self.snapshots()
        return None if snaps.empty else pd.Timestamp(snaps["as_of"].iloc[-1])

    def _existing(self, as_of: AsOf) -> Path:
        path = self.path_for(as_of)
        if not path.is_file():
            raise StoreError(
                f"Expected a feature snapshot as of {normalize_as_of(as_of).isoformat()} in "
                f"{self.features_dir}. Got none: run 'tagsmith features build --as-of ...'."
            )
        return path

    def _latest(self) -> Path:
        latest = self.latest_as_of()
        if latest is None:
            raise StoreError(
                f"Expected a feature snapshot in {self.features_dir}. Got none: run "
                "'tagsmith features build'."
            )
        return self.path_for(latest)


def _read_meta(path: Path, keys: EncryptionKeys | None) -> dict[str, Any]:
    metadata = read_parquet_schema(path, keys).metadata or {}
    raw = metadata.get(_META_KEY)
    if raw is None:
        raise StoreError(f"Expected Tagsmith metadata in {path}. Got a Parquet file without it.")
    result: dict[str, Any] = json.loads(raw)
    return result
