"""The accounting of a validation run: one verdict per row, quarantined rows kept with
their reasons, and per-file counts.

Files are first put together into one text frame of canonical targets with each row's
file, line number and original text (:func:`assemble`); checks mark rows on a
:class:`Rejects` (the first failing check gives the row's reason); :func:`finish`
turns that into the quarantine table and :class:`FileCounts`, checking the invariant
``rows_read == accepted + sum(quarantined.values())`` per file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.errors import FactFileError
from features.io import RawTable
from features.schema import ReasonCode

__all__ = [
    "QUARANTINE_COLUMNS",
    "FileCounts",
    "Rejects",
    "assemble",
    "empty_quarantine",
    "finish",
    "quoted",
    "refuse_all_rejected",
    "resolve_columns",
]

QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source_file",
    "line_number",
    "reason",
    "message",
    "original_line",
)


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


class Rejects:
    """One reason per row: the first check that fails.

    Attributes:
        ok: True where no check has failed yet.
        reason: The reason code of the first failed check ("" where none).
        message: Its message, naming the field and what was expected.
    """

    def __init__(self, n: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        # Per mark: the rows it rejected, its code and their messages. Whole-length
        # object arrays of reasons and messages cost 14 ms per 735k-row block to fill
        # with "" where only a few rows are ever rejected.
        self._marked: list[tuple[np.ndarray, str, np.ndarray]] = []

    def mark(
        self,
        mask: np.ndarray | pd.Series,
        reason: ReasonCode,
        message: Callable[[np.ndarray], Any],
    ) -> None:
        """Reject rows where ``mask`` holds and no earlier check failed; ``message`` gets
        those rows as a boolean mask and returns one message per rejected row."""
        hit = np.asarray(mask, dtype=bool) & self.ok
        if hit.any():
            messages = np.asarray(message(hit), dtype=object)
            self._marked.append((np.flatnonzero(hit), reason.value, messages))
            self.ok[hit] = False

    @property
    def reason(self) -> np.ndarray:
        """The reason code of each row's first failed check ("" where none)."""
        return self.reasons_at(np.ones(len(self.ok), dtype=bool))

    @property
    def message(self) -> np.ndarray:
        """The message of each row's reason ("" where none)."""
        return self.messages_at(np.ones(len(self.ok), dtype=bool))

    def reasons_at(self, rows: np.ndarray) -> np.ndarray:
        """:attr:`reason` of the rows where ``rows`` (a mask) holds."""
        return self._at(rows, messages=False)

    def messages_at(self, rows: np.ndarray) -> np.ndarray:
        """:attr:`message` of the rows where ``rows`` (a mask) holds."""
        return self._at(rows, messages=True)

    def _at(self, rows: np.ndarray, *, messages: bool) -> np.ndarray:
        wanted = np.flatnonzero(rows)
        out = np.full(len(wanted), "", dtype=object)
        for marked, code, texts in self._marked:
            at = np.searchsorted(wanted, marked)
            inside = at < len(wanted)
            inside[inside] = wanted[at[inside]] == marked[inside]
            if not messages:
                out[at[inside]] = code
            else:
                out[at[inside]] = texts if texts.ndim == 0 else texts[inside]
        return out


def quoted(values: pd.Series, hit: np.ndarray) -> pd.Series:
    """The values at ``hit`` in quotes, for messages."""
    return "'" + values[hit].fillna("").astype("str") + "'"


def assemble(
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
                    else _missing_text(len(raw.data))
                )
                for target in targets
            },
            # Copy-on-write: the columns are shared until written, not copied now
            # (copying them was half of this call for a live micro-batch).
            copy=False,
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
    bad = pd.concat(malformed, ignore_index=True) if malformed else empty_quarantine()
    return frame, bad


def _missing_text(n: int) -> pd.Series:
    """A text column of ``n`` missing values (an absent optional column), built from an
    Arrow null array: filling a Series with a scalar cost 4-8 ms per 735k-row block."""
    return pd.Series(pd.array(pa.nulls(n, pa.large_string()), dtype="str"))


def empty_quarantine() -> pd.DataFrame:
    """A quarantine table (:data:`QUARANTINE_COLUMNS`) with no rows."""
    # A copy of one built once: five typed empty columns cost ~0.5 ms per call, paid
    # by every live micro-batch without malformed records.
    return _empty_quarantine().copy()


@functools.cache
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


# The quarantine's column types (resolved once: naming a dtype costs a registry search).
_QUARANTINE_TYPES = {
    "source_file": pd.Series([], dtype="str").dtype,
    "line_number": np.dtype("int64"),
    "reason": pd.Series([], dtype="str").dtype,
    "message": pd.Series([], dtype="str").dtype,
}


def finish(
    raws: Sequence[RawTable],
    frame: pd.DataFrame,
    rejects: Rejects,
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
            "reason": rejects.reasons_at(bad),
            "message": rejects.messages_at(bad),
            "original_line": frame["_text"][bad].to_numpy(),
        },
        copy=False,  # new arrays, taken as they are
    )
    quarantine = pd.concat([malformed, rejected], ignore_index=True) if len(malformed) else rejected
    if len(quarantine):
        quarantine = quarantine.sort_values(
            ["source_file", "line_number"], kind="stable", ignore_index=True
        )
    # Column by column, and only where the type differs: DataFrame.astype with a dict
    # cost ~1.5 ms even for the one quarantine row of a live micro-batch.
    quarantine = pd.DataFrame(
        {
            c: (
                quarantine[c].astype(_QUARANTINE_TYPES[c])
                if c in _QUARANTINE_TYPES and quarantine[c].dtype != _QUARANTINE_TYPES[c]
                else quarantine[c]
            )
            for c in quarantine.columns
        },
        copy=False,
    )
    files = []
    file_index = frame["_file"].to_numpy() if len(frame) else np.array([], dtype=np.int32)
    for i, raw in enumerate(raws):
        in_file = file_index == i
        reasons = pd.Series(rejects.reasons_at(in_file & bad)).value_counts()
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


def refuse_all_rejected(files: list[FileCounts], quarantine: pd.DataFrame) -> None:
    """Raise when no row of a file is valid (accepted, or a duplicate of a valid row)."""
    for counts in files:
        # Duplicates are valid rows seen before: a file of them is a re-import.
        # Erased customers' rows are valid rows refused on purpose, likewise.
        if (
            counts.accepted
            or counts.quarantined.get(ReasonCode.DUPLICATE.value)
            or counts.quarantined.get(ReasonCode.ERASED.value)
        ):
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
