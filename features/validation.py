"""Row validation of imported facts: accept what fits the contract, quarantine the rest.

Pure functions over :class:`features.io.RawTable` text tables: no file access and no
clock (the caller passes ``now``). Every check is a vectorised mask over the whole
batch; each rejected row gets exactly one reason, the first that applies, in the
order the checks are listed in :func:`validate_events` / :func:`validate_customers`.

Invariant, per file: ``rows_read == accepted + sum(quarantined.values())``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.errors import FactFileError
from features.io import RawTable
from features.schema import (
    AMOUNT_REQUIRED_EVENT_TYPES,
    CUSTOMER_BASE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_DTYPES,
    TIMESTAMP_DTYPE,
    AttributeSpec,
    FactsConfig,
    ReasonCode,
    customer_dtypes,
)

__all__ = [
    "QUARANTINE_COLUMNS",
    "CustomersResult",
    "EventsResult",
    "FileCounts",
    "arrow_table",
    "duplicate_rows",
    "empty_customers",
    "empty_events",
    "parse_timestamps",
    "resolve_columns",
    "validate_customers",
    "validate_events",
]

QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source_file",
    "line_number",
    "reason",
    "message",
    "original_line",
)
# What CSV writers put in empty numeric cells (pandas, Arrow, R, SQL dumps): missing.
NULL_NUMBER_TOKENS: frozenset[str] = frozenset({"nan", "na", "n/a", "null", "none", "\\n"})


@dataclass
class FileCounts:
    """What happened to the rows of one file.

    Attributes:
        source: The file's path.
        kind: ``customers`` or ``events``.
        sha256: Hex digest of the file's bytes.
        dialect: How it was read (format, delimiter, header, encoding).
        rows_read: Data rows in the file.
        accepted: Rows that passed every check.
        quarantined: Rejected rows per reason code.
    """

    source: str
    kind: str
    sha256: str
    dialect: str
    rows_read: int
    accepted: int
    quarantined: dict[str, int] = field(default_factory=dict)

    @property
    def total_quarantined(self) -> int:
        """Rejected rows over all reasons."""
        return sum(self.quarantined.values())


@dataclass
class CustomersResult:
    """Validated customers.

    Attributes:
        accepted: New canonical customers (not yet stored).
        quarantine: Rejected rows (:data:`QUARANTINE_COLUMNS`).
        files: Counts per file.
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    files: list[FileCounts]


@dataclass
class EventsResult:
    """Validated events.

    Attributes:
        accepted: New canonical events (not yet stored).
        quarantine: Rejected rows (:data:`QUARANTINE_COLUMNS`).
        files: Counts per file.
        created_customers: Canonical customers created from events of unknown
            customers (signup = their first accepted event), when allowed.
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    files: list[FileCounts]
    created_customers: pd.DataFrame


def empty_events() -> pd.DataFrame:
    """A canonical events table with no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS})


def empty_customers(config: FactsConfig) -> pd.DataFrame:
    """A canonical customers table with no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in customer_dtypes(config).items()})


def parse_timestamps(values: pd.Series, date_format: str | None) -> pd.Series:
    """Parse text to UTC timestamps; unparseable or blank values become NaT.

    Naive times are taken as UTC; ISO 8601 offsets are converted. ``date_format`` is
    a ``strptime`` format (e.g. ``%Y%m%d``); without it ISO 8601 is expected
    (``2021-03-04``, ``2021-03-04 10:00``, ``2021-03-04T10:00:00+08:00``, ``20210304``).
    """
    parsed = pd.to_datetime(values, format=date_format or "ISO8601", errors="coerce", utc=True)
    return pd.Series(parsed, index=values.index).astype(TIMESTAMP_DTYPE)


def resolve_columns(
    raw: RawTable,
    mapping: dict[str, str],
    *,
    kind: str,
    targets: Sequence[str],
    required: Sequence[str],
) -> dict[str, str]:
    """Which column of ``raw`` feeds each canonical target.

    ``mapping`` entries win; other targets are matched by name (case-insensitive).
    Sources of headerless files are 0-based positions: ``2`` or ``col2``.

    Raises:
        FactFileError: A mapping names an unknown target or a source the file lacks,
            or a required target has no column.
    """
    unknown = [t for t in mapping if t not in targets]
    if unknown:
        raise FactFileError(
            f"{raw.path}: --map targets must be {kind} columns {list(targets)}. "
            f"Got {unknown} instead."
        )
    by_lower = {c.lower(): c for c in raw.columns}
    resolved: dict[str, str] = {}
    for target, source in mapping.items():
        name = source
        if name not in raw.columns and name.lower() in by_lower:
            name = by_lower[name.lower()]
        if name not in raw.columns:
            position = source[3:] if source.lower().startswith("col") else source
            if position.isdigit() and int(position) < len(raw.columns):
                name = raw.columns[int(position)]
            else:
                raise FactFileError(
                    f"{raw.path}: --map {target}={source}: expected a column name of "
                    f"{list(raw.columns)} or a 0-based position below {len(raw.columns)}. "
                    f"Got {source!r}, which the file does not have."
                )
        resolved[target] = name
    for target in targets:
        if target not in resolved and target in by_lower:
            resolved[target] = by_lower[target]
    missing = [t for t in required if t not in resolved]
    if missing:
        what = "header" if raw.has_header else "headerless file"
        raise FactFileError(
            f"{raw.path}: missing required column(s) {missing} for {kind}. Expected a column "
            f"named like that or --map {missing[0]}=SOURCE; got {what} with columns "
            f"{list(raw.columns)}."
        )
    return resolved


class _Rejects:
    """One reason per row: the first check that fails."""

    def __init__(self, n: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.message = np.full(n, "", dtype=object)

    def mark(
        self,
        mask: np.ndarray | pd.Series,
        reason: ReasonCode,
        message: Callable[[np.ndarray], Any],
    ) -> None:
        hit = np.asarray(mask, dtype=bool) & self.ok
        if hit.any():
            self.reason[hit] = reason.value
            self.message[hit] = np.asarray(message(hit), dtype=object)
            self.ok[hit] = False


def _quoted(values: pd.Series, hit: np.ndarray) -> pd.Series:
    return "'" + values[hit].fillna("").astype("str") + "'"


def _assemble(
    raws: Sequence[RawTable],
    mapping: dict[str, str],
    *,
    kind: str,
    targets: Sequence[str],
    required: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate files into one text frame of targets plus _file/_line/_text."""
    parts = []
    malformed = []
    for i, raw in enumerate(raws):
        columns = resolve_columns(raw, mapping, kind=kind, targets=targets, required=required)
        part = pd.DataFrame(
            {
                target: (
                    raw.data[columns[target]].reset_index(drop=True)
                    if target in columns
                    else pd.Series(pd.NA, index=range(len(raw.data)), dtype="str")
                )
                for target in targets
            }
        )
        part["_file"] = np.int32(i)
        part["_line"] = raw.line_number
        # Kept as Arrow-backed text: to_numpy() would make a Python object per line.
        part["_text"] = raw.text.reset_index(drop=True)
        parts.append(part)
        if len(raw.malformed):
            malformed.append(
                pd.DataFrame(
                    {
                        "source_file": str(raw.path),
                        "line_number": raw.malformed["line_number"].to_numpy(),
                        "reason": ReasonCode.MALFORMED_ROW.value,
                        "message": raw.malformed["message"].to_numpy(),
                        "original_line": raw.malformed["text"].to_numpy(),
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    bad = pd.concat(malformed, ignore_index=True) if malformed else _empty_quarantine()
    return frame, bad


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_file": pd.Series([], dtype="str"),
            "line_number": pd.Series([], dtype="int64"),
            "reason": pd.Series([], dtype="str"),
            "message": pd.Series([], dtype="str"),
            "original_line": pd.Series([], dtype="str"),
        }
    )


def _finish(
    raws: Sequence[RawTable],
    frame: pd.DataFrame,
    rejects: _Rejects,
    malformed: pd.DataFrame,
    *,
    kind: str,
) -> tuple[pd.DataFrame, list[FileCounts]]:
    """Quarantine frame and per-file counts; checks the counting invariant."""
    sources = np.array([str(r.path) for r in raws], dtype=object)
    bad = ~rejects.ok
    rejected = pd.DataFrame(
        {
            "source_file": sources[frame["_file"].to_numpy()[bad]] if bad.any() else [],
            "line_number": frame["_line"].to_numpy()[bad],
            "reason": rejects.reason[bad],
            "message": rejects.message[bad],
            "original_line": frame["_text"][bad].to_numpy(),
        }
    )
    quarantine = pd.concat([malformed, rejected], ignore_index=True) if len(malformed) else rejected
    if len(quarantine):
        quarantine = quarantine.sort_values(
            ["source_file", "line_number"], kind="stable", ignore_index=True
        )
    quarantine = quarantine.astype(
        {"source_file": "str", "line_number": "int64", "reason": "str", "message": "str"}
    )
    files = []
    file_index = frame["_file"].to_numpy() if len(frame) else np.array([], dtype=np.int32)
    for i, raw in enumerate(raws):
        in_file = file_index == i
        reasons = pd.Series(rejects.reason[in_file & bad]).value_counts()
        counts = {str(k): int(v) for k, v in reasons.items()}
        n_malformed = len(raw.malformed)
        if n_malformed:
            counts[ReasonCode.MALFORMED_ROW.value] = (
                counts.get(ReasonCode.MALFORMED_ROW.value, 0) + n_malformed
            )
        result = FileCounts(
            source=str(raw.path),
            kind=kind,
            sha256=raw.sha256,
            dialect=raw.dialect,
            rows_read=raw.rows_read,
            accepted=int((in_file & rejects.ok).sum()),
            quarantined=dict(sorted(counts.items())),
        )
        if result.accepted + result.total_quarantined != result.rows_read:
            raise AssertionError(f"row accounting broke for {raw.path}: {result}")
        files.append(result)
    return quarantine, files


def _numbers(
    rejects: _Rejects,
    values: pd.Series,
    *,
    field_name: str,
    bad_reason: ReasonCode,
    negative_reason: ReasonCode,
) -> pd.Series:
    """Parse a non-negative number column; mark non-numeric and negative values."""
    values = _null_tokens_to_na(values)
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    present = values.notna().to_numpy()
    finite = np.isfinite(numbers.to_numpy())
    rejects.mark(
        present & ~finite,
        bad_reason,
        lambda hit: f"field '{field_name}': expected a number, got " + _quoted(values, hit),
    )
    rejects.mark(
        present & finite & (numbers.to_numpy() < 0),
        negative_reason,
        lambda hit: f"field '{field_name}': expected a number >= 0, got " + _quoted(values, hit),
    )
    return numbers


def _null_tokens_to_na(values: pd.Series) -> pd.Series:
    return values.mask(values.str.lower().isin(list(NULL_NUMBER_TOKENS)))


def _timestamps(
    rejects: _Rejects,
    values: pd.Series,
    *,
    field_name: str,
    date_format: str | None,
) -> pd.Series:
    parsed = parse_timestamps(values, date_format)
    expected = f"a time matching {date_format}" if date_format else "an ISO 8601 time"
    rejects.mark(
        parsed.isna().to_numpy(),
        ReasonCode.BAD_TIMESTAMP,
        lambda hit: (
            f"field '{field_name}': expected {expected}, got "
            + _quoted(values, hit).where(values[hit].notna(), "blank")
        ),
    )
    return parsed


def _blank_ids(rejects: _Rejects, ids: pd.Series) -> None:
    rejects.mark(
        ids.isna().to_numpy(),
        ReasonCode.BLANK_ID,
        lambda hit: np.full(
            int(hit.sum()), "field 'customer_id': expected a non-empty id, got blank"
        ),
    )


def _future(
    rejects: _Rejects,
    times: pd.Series,
    *,
    field_name: str,
    now: pd.Timestamp,
    config: FactsConfig,
) -> None:
    limit = now + pd.Timedelta(hours=config.future_tolerance_hours)
    rejects.mark(
        (times > limit).fillna(False).to_numpy(),
        ReasonCode.FUTURE_EVENT,
        lambda hit: (
            f"field '{field_name}': expected a time no later than {limit.isoformat()} "
            f"(now + facts.future_tolerance_hours={config.future_tolerance_hours}), got "
            + times[hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        ),
    )


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table (no index); missing values become nulls."""
    with warnings.catch_warnings():
        # pyarrow reads tz-aware columns through Series.values, which pandas 3.1 flags.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return pa.Table.from_pandas(frame, preserve_index=False)


def duplicate_rows(
    new: pd.DataFrame,
    columns: Sequence[str],
    stored: pd.DataFrame | pa.Table | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicates among ``new`` and against ``stored`` (missing equals missing).

    DuckDB hash-joins on the values themselves, so no hash collision can drop a row.

    Returns:
        ``(repeats, in_store)``: boolean masks over ``new``: rows equal to an earlier
        row of ``new``, and rows equal to some row of ``stored``.
    """
    repeats = np.zeros(len(new), dtype=bool)
    in_store = np.zeros(len(new), dtype=bool)
    if not len(new):
        return repeats, in_store
    rows = arrow_table(new[list(columns)].reset_index(drop=True)).append_column(
        "_pos", pa.array(np.arange(len(new), dtype=np.int64))
    )
    # Column names are canonical names or validated attribute identifiers, never user text.
    quoted = [f'"{c}"' for c in columns]
    with duckdb.connect() as con:
        con.register("new_rows", rows)
        found = con.execute(
            "SELECT _pos FROM new_rows QUALIFY row_number() OVER "  # noqa: S608
            f"(PARTITION BY {', '.join(quoted)} ORDER BY _pos) > 1"
        ).fetchnumpy()["_pos"]
        repeats[np.asarray(found, dtype=np.int64)] = True
        if stored is not None and len(stored):
            con.register("stored_rows", stored)
            match = " AND ".join(f"n.{c} IS NOT DISTINCT FROM s.{c}" for c in quoted)
            found = con.execute(
                f"SELECT n._pos FROM new_rows n SEMI JOIN stored_rows s ON {match}"  # noqa: S608
            ).fetchnumpy()["_pos"]
            in_store[np.asarray(found, dtype=np.int64)] = True
    return repeats, in_store


def validate_events(
    raws: Sequence[RawTable],
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    customers: pd.DataFrame,
    stored_events: pd.DataFrame | pa.Table | None = None,
    mapping: dict[str, str] | None = None,
    event_type: str | None = None,
    date_format: str | None = None,
    create_unknown: bool | None = None,
) -> EventsResult:
    """Validate events files against the contract, known customers and stored events.

    Checks, in order (a row gets the first that fails): malformed row, blank id,
    unparseable timestamp, unknown event type, non-numeric amount, negative amount,
    missing amount on purchase/refund, bad quantity, event in the future beyond
    ``config.future_tolerance_hours``, unknown customer, event before signup, exact
    duplicate (of an earlier row in the batch or of a stored event).

    Args:
        raws: The files, read as text.
        config: The facts config (event types, tolerance, unknown-customer policy).
        now: The import time; events later than ``now`` + tolerance are rejected.
        customers: Known customers (at least ``customer_id``, ``signup_at``): stored
            ones plus those accepted in this import.
        stored_events: Events already stored, for duplicate detection.
        mapping: ``target -> source`` column mapping (``--map``).
        event_type: Constant event type for files without an ``event_type`` column
            (also fills blank values).
        date_format: ``strptime`` format of ``occurred_at``.
        create_unknown: Create customers for unknown ids instead of quarantining
            their events; ``None`` follows ``config.unknown_customer``.

    Raises:
        FactFileError: A file lacks a required column, or every row is rejected
            for a reason other than being a duplicate.
    """
    mapping = mapping or {}
    if event_type is not None and event_type not in config.all_event_types:
        raise FactFileError(
            f"--event-type must be one of {list(config.all_event_types)} (declare more under "
            f"facts.event_types). Got {event_type!r} instead."
        )
    required = ["customer_id", "occurred_at"] + ([] if event_type else ["event_type"])
    frame, malformed = _assemble(
        raws, mapping, kind="events", targets=EVENT_COLUMNS, required=required
    )
    rejects = _Rejects(len(frame))
    ids = frame["customer_id"]
    _blank_ids(rejects, ids)
    occurred = _timestamps(
        rejects, frame["occurred_at"], field_name="occurred_at", date_format=date_format
    )
    types = frame["event_type"].str.lower()
    if event_type is not None:
        types = types.fillna(event_type)
    known_types = list(config.all_event_types)
    rejects.mark(
        (~types.isin(known_types)).to_numpy(),
        ReasonCode.UNKNOWN_EVENT_TYPE,
        lambda hit: (
            f"field 'event_type': expected one of {', '.join(known_types)}, got "
            + _quoted(frame["event_type"], hit).where(frame["event_type"][hit].notna(), "blank")
        ),
    )
    amount = _numbers(
        rejects,
        frame["amount"],
        field_name="amount",
        bad_reason=ReasonCode.BAD_AMOUNT,
        negative_reason=ReasonCode.NEGATIVE_AMOUNT,
    )
    needs_amount = types.isin(list(AMOUNT_REQUIRED_EVENT_TYPES)).to_numpy()
    rejects.mark(
        needs_amount & amount.isna().to_numpy(),
        ReasonCode.MISSING_AMOUNT,
        lambda hit: "field 'amount': expected an amount on a " + types[hit] + " event, got none",
    )
    quantity = _numbers(
        rejects,
        frame["quantity"],
        field_name="quantity",
        bad_reason=ReasonCode.BAD_QUANTITY,
        negative_reason=ReasonCode.BAD_QUANTITY,
    )
    _future(rejects, occurred, field_name="occurred_at", now=now, config=config)

    canon = pd.DataFrame(
        {
            "customer_id": ids.astype(EVENT_DTYPES["customer_id"]),
            "occurred_at": occurred,
            "event_type": types.astype(EVENT_DTYPES["event_type"]),
            "amount": amount,
            "category": frame["category"].astype(EVENT_DTYPES["category"]),
            "product_id": frame["product_id"].astype(EVENT_DTYPES["product_id"]),
            "order_id": frame["order_id"].astype(EVENT_DTYPES["order_id"]),
            "quantity": quantity,
        }
    )

    # Customers: known ones, or created from the first accepted event when allowed.
    signup = pd.Series(
        customers["signup_at"].to_numpy(), index=customers["customer_id"].astype("str")
    )
    create = config.unknown_customer == "create" if create_unknown is None else create_unknown
    known = canon["customer_id"].isin(signup.index).to_numpy()
    unknown = rejects.ok & ~known
    created = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="str"),
            "signup_at": pd.Series([], dtype=TIMESTAMP_DTYPE),
        }
    )
    if create and unknown.any():
        created = (
            canon.loc[unknown, ["customer_id", "occurred_at"]]
            .groupby("customer_id", sort=True, observed=True)["occurred_at"]
            .min()
            .rename("signup_at")
            .reset_index()
        )
        signup = pd.concat(
            [
                signup,
                pd.Series(
                    created["signup_at"].to_numpy(), index=created["customer_id"].astype("str")
                ),
            ]
        )
    else:
        rejects.mark(
            unknown,
            ReasonCode.UNKNOWN_CUSTOMER,
            lambda hit: (
                "field 'customer_id': expected a known customer (import its customers "
                "file first, or set facts.unknown_customer: create), got " + _quoted(ids, hit)
            ),
        )
    signup_of = canon["customer_id"].astype("str").map(signup)
    if not isinstance(signup_of.dtype, pd.DatetimeTZDtype):  # no customer matched at all
        signup_of = pd.Series(pd.NaT, index=canon.index, dtype=TIMESTAMP_DTYPE)
    before = (canon["occurred_at"] < signup_of).fillna(False).to_numpy()
    rejects.mark(
        before,
        ReasonCode.BEFORE_SIGNUP,
        lambda hit: (
            "field 'occurred_at': expected a time at or after the customer's signup "
            + signup_of[hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
            + ", got "
            + canon["occurred_at"][hit].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        ),
    )

    candidates = np.flatnonzero(rejects.ok)
    repeats, in_store = duplicate_rows(canon.iloc[candidates], EVENT_COLUMNS, stored_events)
    within = np.zeros(len(canon), dtype=bool)
    within[candidates] = repeats
    rejects.mark(
        within,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an earlier row in this import"),
    )
    stored_dup = np.zeros(len(canon), dtype=bool)
    stored_dup[candidates] = in_store
    rejects.mark(
        stored_dup,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an event already stored"),
    )

    quarantine, files = _finish(raws, frame, rejects, malformed, kind="events")
    _refuse_all_rejected(files, quarantine)
    accepted = canon[rejects.ok].reset_index(drop=True)
    if len(created):
        # Only customers with at least one accepted event are created.
        created = created[created["customer_id"].isin(accepted["customer_id"])]
    created_customers = pd.DataFrame(
        {
            "customer_id": created["customer_id"].astype("string").to_numpy(),
            "signup_at": created["signup_at"].astype(TIMESTAMP_DTYPE).to_numpy(),
        }
    )
    return EventsResult(accepted, quarantine, files, created_customers)


def _refuse_all_rejected(files: list[FileCounts], quarantine: pd.DataFrame) -> None:
    """Raise when no row of a file is valid (accepted, or a duplicate of a valid row)."""
    for counts in files:
        # Duplicates are valid rows seen before: a file of them is a re-import.
        if counts.accepted or counts.quarantined.get(ReasonCode.DUPLICATE.value):
            continue
        examples = quarantine[quarantine["source_file"] == counts.source].head(3)
        shown = "; ".join(
            f"line {row.line_number}: {row.reason}: {row.message}" for row in examples.itertuples()
        )
        raise FactFileError(
            f"{counts.source}: expected at least one valid {counts.kind} row. Got every one "
            f"of {counts.rows_read} rows rejected ({counts.quarantined}); first: {shown}. "
            "Nothing was imported: check --map, --date-format and --event-type."
        )


def _attribute(
    rejects: _Rejects, spec: AttributeSpec, values: pd.Series, date_format: str | None
) -> pd.Series:
    """Convert one attribute column to its dtype; mark missing and disallowed values."""
    if spec.type in ("int", "float"):
        values = _null_tokens_to_na(values)
    present = values.notna().to_numpy()
    if spec.required:
        rejects.mark(
            ~present,
            ReasonCode.MISSING_ATTRIBUTE,
            lambda hit: np.full(
                int(hit.sum()),
                f"field '{spec.name}': expected a value (required attribute), got blank",
            ),
        )
    if spec.type == "string":
        if spec.allowed is None:
            return values.astype("string")
        canonical = {a.lower(): a for a in spec.allowed}
        converted = values.str.lower().map(canonical)
        rejects.mark(
            present & converted.isna().to_numpy(),
            ReasonCode.BAD_ATTRIBUTE,
            lambda hit: (
                f"field '{spec.name}': expected one of {spec.allowed}, got " + _quoted(values, hit)
            ),
        )
        return converted.astype("string")
    if spec.type == "date":
        parsed = parse_timestamps(values, None)
        rejects.mark(
            present & parsed.isna().to_numpy(),
            ReasonCode.BAD_ATTRIBUTE,
            lambda hit: (
                f"field '{spec.name}': expected an ISO 8601 date, got " + _quoted(values, hit)
            ),
        )
        return parsed
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    arr = numbers.to_numpy()
    finite = np.isfinite(arr)
    ok = finite.copy()
    if spec.type == "int":
        ok &= np.equal(np.floor(np.where(finite, arr, 0)), np.where(finite, arr, 0))
    if spec.min is not None:
        ok &= np.where(finite, arr, 0) >= spec.min
    if spec.max is not None:
        ok &= np.where(finite, arr, 0) <= spec.max
    bounds = f" in [{spec.min}, {spec.max}]" if spec.min is not None or spec.max is not None else ""
    kind = "an integer" if spec.type == "int" else "a number"
    rejects.mark(
        present & ~ok,
        ReasonCode.BAD_ATTRIBUTE,
        lambda hit: f"field '{spec.name}': expected {kind}{bounds}, got " + _quoted(values, hit),
    )
    clean = numbers.where(ok)
    return clean.round().astype("Int64") if spec.type == "int" else clean


def validate_customers(
    raws: Sequence[RawTable],
    *,
    config: FactsConfig,
    now: pd.Timestamp,
    stored: pd.DataFrame | None = None,
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
) -> CustomersResult:
    """Validate customers files against the contract and the stored customers.

    Checks, in order: malformed row, blank id, unparseable ``signup_at``, missing
    required attribute / attribute not allowed or out of range (per
    :class:`~features.schema.AttributeSpec`), signup in the future, duplicate id
    (an identical repeat is ``duplicate``; a conflicting one ``duplicate_customer``;
    the first occurrence wins, and stored customers are never overwritten).

    Raises:
        FactFileError: A file lacks a required column, or every row is rejected
            for a reason other than being a duplicate.
    """
    mapping = mapping or {}
    targets = [*CUSTOMER_BASE_COLUMNS, *(a.name for a in config.attributes)]
    required = [*CUSTOMER_BASE_COLUMNS, *(a.name for a in config.attributes if a.required)]
    frame, malformed = _assemble(
        raws, mapping, kind="customers", targets=targets, required=required
    )
    rejects = _Rejects(len(frame))
    ids = frame["customer_id"]
    _blank_ids(rejects, ids)
    signup = _timestamps(
        rejects, frame["signup_at"], field_name="signup_at", date_format=date_format
    )
    canon = pd.DataFrame({"customer_id": ids.astype("string"), "signup_at": signup})
    for spec in config.attributes:
        canon[spec.name] = _attribute(rejects, spec, frame[spec.name], date_format)
    _future(rejects, signup, field_name="signup_at", now=now, config=config)

    dtypes = customer_dtypes(config)
    canon = canon.astype(dtypes)
    candidates = np.flatnonzero(rejects.ok)
    subset = canon.iloc[candidates]
    aligned = (
        stored.reindex(columns=list(dtypes)).astype(dtypes)
        if stored is not None and len(stored)
        else None
    )
    repeats, in_store = duplicate_rows(subset, list(dtypes), aligned)
    same_id = np.zeros(len(canon), dtype=bool)
    same_row = np.zeros(len(canon), dtype=bool)
    identical = np.zeros(len(canon), dtype=bool)
    same_id[candidates] = subset["customer_id"].duplicated(keep="first").to_numpy()
    same_row[candidates] = repeats
    identical[candidates] = in_store
    rejects.mark(
        same_row,
        ReasonCode.DUPLICATE,
        lambda hit: np.full(int(hit.sum()), "exact duplicate of an earlier row in this import"),
    )
    rejects.mark(
        same_id,
        ReasonCode.DUPLICATE_CUSTOMER,
        lambda hit: (
            "field 'customer_id': expected a unique id, got "
            + _quoted(ids, hit)
            + " again with different values (the first row wins)"
        ),
    )
    if aligned is not None:
        rejects.mark(
            identical,
            ReasonCode.DUPLICATE,
            lambda hit: np.full(int(hit.sum()), "exact duplicate of a customer already stored"),
        )
        rejects.mark(
            canon["customer_id"].isin(aligned["customer_id"]).to_numpy(),
            ReasonCode.DUPLICATE_CUSTOMER,
            lambda hit: (
                "field 'customer_id': expected an id not yet stored, got "
                + _quoted(ids, hit)
                + ", stored with different values (stored customers are not overwritten)"
            ),
        )
    quarantine, files = _finish(raws, frame, rejects, malformed, kind="customers")
    _refuse_all_rejected(files, quarantine)
    accepted = canon[rejects.ok].reset_index(drop=True)
    return CustomersResult(accepted, quarantine, files)
