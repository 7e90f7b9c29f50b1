"""What the tag store holds and how rows cross into it: the long format, the tables,
run records, the checks on incoming rows, and the SQL pieces the store's queries share.

Timestamps are stored as naive UTC ``TIMESTAMP`` values and returned as
``datetime64[us, UTC]``, like the fact contract.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.cutoffs import as_of_out_of_range
from tags.errors import TagStoreError

__all__ = [
    "DIFF_SQL",
    "MATRIX_SQL",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SNAPSHOT_COLUMNS",
    "SOURCES",
    "TAG_COLUMNS",
    "RunInfo",
    "check_long",
    "filters",
    "format_of",
    "has_tables",
    "ident",
    "is_busy",
    "naive",
    "now",
    "open_failure",
    "run_info_of",
    "select_tags",
    "sql_str",
    "to_as_of",
    "utc_columns",
    "validate_incoming",
]

# The long format of tag rows (the engine's output, the store's input): one row per
# customer and tag that applies.
TAG_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "tag_id",
    "value",
    "score",
    "source",
    "version",
    "as_of",
)
SNAPSHOT_COLUMNS: tuple[str, ...] = (*TAG_COLUMNS, "run_id")
SOURCES: frozenset[str] = frozenset({"fact", "rule", "model"})
SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    as_of TIMESTAMP NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,
    n_rows BIGINT,
    n_customers BIGINT,
    n_tags INTEGER,
    fingerprint VARCHAR,
    meta VARCHAR,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS snapshots (
    customer_id VARCHAR NOT NULL,
    tag_id VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    score DOUBLE,
    source VARCHAR NOT NULL,
    version VARCHAR,
    as_of TIMESTAMP NOT NULL,
    run_id VARCHAR NOT NULL
);
"""


def to_as_of(value: Any) -> pd.Timestamp:
    """An as-of date or time as a UTC timestamp (naive input is read as UTC).

    Raises:
        TagStoreError: ``value`` is not a date or time, or lies outside the supported
            range (:data:`features.cutoffs.AS_OF_MIN` to :data:`~features.cutoffs.AS_OF_MAX`).
    """
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TagStoreError(
            f"Expected an as-of date such as 2024-06-30. Got {value!r} instead."
        ) from exc
    if ts is pd.NaT:
        raise TagStoreError(f"Expected an as-of date such as 2024-06-30. Got {value!r} instead.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    problem = as_of_out_of_range(ts)
    if problem:
        raise TagStoreError(problem)
    return ts.as_unit("ns")


def naive(ts: pd.Timestamp) -> datetime:
    """Parameter form of a UTC timestamp for a naive ``TIMESTAMP`` column."""
    return ts.tz_convert("UTC").tz_localize(None).to_pydatetime()


def utc_columns(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    for col in columns:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    return df


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class RunInfo:
    """One tagging run as recorded in the store.

    Attributes:
        run_id: Unique id of the run.
        as_of: The as-of date of its snapshot (UTC).
        status: ``running``, ``succeeded``, ``failed``, ``replaced`` (a later run wrote
            the same as-of date) or ``interrupted`` (the process died mid-run).
        n_rows: Tag rows written.
        n_customers: Customers the run evaluated (the denominator of coverage shares).
        n_tags: Distinct tags written.
        fingerprint: Hash of the run's inputs (facts, feature spec, catalogue, models).
        reused: True when ``write_snapshot`` found the same inputs already stored and
            wrote nothing.
    """

    run_id: str
    as_of: pd.Timestamp
    status: str
    n_rows: int
    n_customers: int
    n_tags: int
    fingerprint: str | None
    started_at: pd.Timestamp | None = None
    finished_at: pd.Timestamp | None = None
    meta: Mapping[str, Any] | None = None
    reused: bool = False


DIFF_SQL = """
WITH a AS (SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = ? {where}),
     b AS (SELECT customer_id, tag_id, value FROM snapshots WHERE as_of = ? {where})
SELECT coalesce(a.customer_id, b.customer_id) AS customer_id,
       coalesce(a.tag_id, b.tag_id) AS tag_id,
       a.value AS from_value,
       b.value AS to_value,
       CASE WHEN a.value IS NULL THEN 'entered'
            WHEN b.value IS NULL THEN 'left'
            ELSE 'changed' END AS change
FROM a FULL OUTER JOIN b ON a.customer_id = b.customer_id AND a.tag_id = b.tag_id
WHERE a.value IS DISTINCT FROM b.value
ORDER BY tag_id, customer_id
"""

MATRIX_SQL = """
WITH a AS (SELECT customer_id, value FROM snapshots WHERE as_of = ? AND tag_id = ?),
     b AS (SELECT customer_id, value FROM snapshots WHERE as_of = ? AND tag_id = ?)
SELECT coalesce(a.value, '(absent)') AS from_value,
       coalesce(b.value, '(absent)') AS to_value,
       count(*) AS count
FROM a FULL OUTER JOIN b ON a.customer_id = b.customer_id
GROUP BY ALL ORDER BY from_value, to_value
"""


def has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'"
    ).fetchone()
    return bool(row and row[0])


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(path: Path) -> str:
    return str(path).replace("'", "''")


def format_of(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise TagStoreError(
        f"Expected an output file ending in .csv or .parquet. Got {str(path)!r} instead."
    )


def select_tags(tag_id: str | None, tags: Collection[str] | None) -> Collection[str] | None:
    if tag_id is None:
        return tags
    if tags is not None and tag_id not in tags:
        return []
    return [tag_id]


def filters(
    *, tags: Collection[str] | None = None, customers: Collection[str] | None = None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if tags is not None:
        clauses.append("AND list_contains(?, tag_id)")
        params.append(sorted(tags))
    if customers is not None:
        wanted = sorted(customers)
        if len(wanted) == 1:
            # An equality is pushed down to DuckDB's row-group min/max (zone maps); with
            # snapshots stored in customer order (``write_snapshot``) one customer's read
            # scans one row group per snapshot instead of every row. ``list_contains`` is
            # not pushed down: a full scan.
            clauses.append("AND customer_id = ?")
            params.append(wanted[0])
        else:
            clauses.append("AND list_contains(?, customer_id)")
            params.append(wanted)
    return " ".join(clauses), params


def check_long(tags: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    missing = [c for c in TAG_COLUMNS if c not in tags.columns and c != "as_of"]
    if missing:
        raise TagStoreError(
            f"Expected a long tag table with columns {list(TAG_COLUMNS)}. "
            f"Got one missing {missing}."
        )
    if "as_of" in tags.columns and len(tags):
        stamped = pd.to_datetime(tags["as_of"], utc=True)
        wrong = stamped != as_of
        if wrong.any():
            first = tags.loc[wrong, "as_of"].iloc[0]
            raise TagStoreError(
                f"Expected every row's as_of to be the run's as-of {as_of:%Y-%m-%d %H:%M}. "
                f"Got {int(wrong.sum())} row(s) with another, e.g. {first!r}."
            )
    return tags[["customer_id", "tag_id", "value", "score", "source", "version"]]


def validate_incoming(con: duckdb.DuckDBPyConnection, *, count_customers: bool) -> dict[str, int]:
    distinct_customers = "count(DISTINCT customer_id)" if count_customers else "0"
    row = con.execute(
        f"SELECT count(*), {distinct_customers}, count(DISTINCT tag_id), "  # noqa: S608
        "count(*) FILTER (WHERE customer_id IS NULL OR tag_id IS NULL OR value IS NULL), "
        "count(*) FILTER (WHERE source IS NULL OR NOT list_contains(?, source)) "
        "FROM incoming",
        [sorted(SOURCES)],
    ).fetchone()
    assert row is not None
    n_rows, n_cust, n_tags, n_null, n_bad_source = (int(v) for v in row)
    if n_null:
        raise TagStoreError(
            f"Expected customer_id, tag_id and value on every tag row. Got {n_null} row(s) "
            "with a missing one."
        )
    if n_bad_source:
        raise TagStoreError(
            f"Expected source to be one of {sorted(SOURCES)} on every tag row. Got "
            f"{n_bad_source} row(s) with another."
        )
    dup = con.execute(
        "SELECT customer_id, tag_id, count(*) AS n FROM incoming GROUP BY ALL HAVING n > 1 LIMIT 3"
    ).fetchall()
    if dup:
        shown = ", ".join(f"({c!r}, {t!r}) x{n}" for c, t, n in dup)
        raise TagStoreError(
            f"Expected at most one row per customer and tag. Got duplicates, e.g. {shown}."
        )
    return {"n_rows": n_rows, "n_customers": n_cust, "n_tags": n_tags}


def run_info_of(row: pd.Series, *, reused: bool = False) -> RunInfo:
    def ts(v: Any) -> pd.Timestamp | None:
        return None if pd.isna(v) else to_as_of(v)

    def count(v: Any) -> int:
        return 0 if pd.isna(v) else int(v)

    as_of = ts(row["as_of"])
    assert as_of is not None
    meta = row.get("meta")
    return RunInfo(
        run_id=str(row["run_id"]),
        as_of=as_of,
        status=str(row["status"]),
        n_rows=count(row["n_rows"]),
        n_customers=count(row["n_customers"]),
        n_tags=count(row["n_tags"]),
        fingerprint=None if pd.isna(row["fingerprint"]) else str(row["fingerprint"]),
        started_at=ts(row["started_at"]),
        finished_at=ts(row["finished_at"]),
        meta=json.loads(meta) if isinstance(meta, str) and meta else None,
        reused=reused,
    )


def is_busy(exc: Exception) -> bool:
    """Whether a failed open means another connection holds the file (worth a retry)."""
    if isinstance(exc, duckdb.ConnectionException):
        return True
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def open_failure(path: Path, exc: Exception) -> str:
    """What went wrong opening the store: held too long, read-only, or damaged."""
    text = str(exc)
    if is_busy(exc):
        return (
            f"The tag store {path} is in use by another process (a tagging run?). "
            f"Try again when it has finished. ({exc})"
        )
    if "Read-only file system" in text or "Permission denied" in text:
        return (
            f"Expected to open the tag store {path} for writing. Got a read-only file or "
            f"folder ({exc}); make {path.parent} writable or run this on a writable copy."
        )
    return (
        f"Expected {path} to be a Tagsmith tag store (a DuckDB database). Got a damaged or "
        f"foreign file ({exc}). Restore it with 'tagsmith store restore BACKUP', or move it "
        "aside and rebuild it with 'tagsmith tags run'."
    )
