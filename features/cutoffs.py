"""One feature frame from the event index, at one cutoff or many: the loop over cutoffs.

Every output column is allocated once at its full length and filled cutoff by cutoff,
family by family (:mod:`features.families`), then handed to the frame without a copy.
The order of the families and when per-call structures are dropped are tuned for the
peak memory of long builds (see ``benchmarks/features.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.catalog import FeatureInfo, feature_catalog
from features.column_blocks import ColumnBlocks, block_layout, plain_assignment
from features.errors import FeaturesError, SpecError
from features.event_arrays import EventArrays
from features.families import (
    activity,
    attributes,
    engagement,
    preference,
    rfm,
    rhythm,
    windowed,
)
from features.families.base import Coded, Cutoff
from features.memory import release_freed_memory
from features.schema import TIMESTAMP_DTYPE
from features.spec import FeatureSpec, default_spec

__all__ = [
    "AS_OF_MAX",
    "AS_OF_MIN",
    "AsOf",
    "CutoffColumns",
    "as_of_out_of_range",
    "build_cutoffs",
    "cutoff_columns",
    "normalize_as_of",
]

AsOf = str | dt.date | dt.datetime | pd.Timestamp | np.datetime64
_I64 = np.int64
_NUMPY_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool"})


# The dates an as-of may take. Features and tags count in nanoseconds (pandas'
# datetime64[ns] ends in 2262) and subtract windows of up to years from the cutoff, so
# a bound well inside that range is checked once, where an as-of is parsed, instead of
# overflowing somewhere downstream (hostile findings 14-3 and 14-6: 2999-01-01,
# 9999-12-31 and 0001-01-01 gave tracebacks and HTTP 500).
AS_OF_MIN = pd.Timestamp("1900-01-01", tz="UTC")
AS_OF_MAX = pd.Timestamp("2200-01-01", tz="UTC")


def as_of_out_of_range(ts: pd.Timestamp) -> str | None:
    """Why ``ts`` (UTC) is no usable as-of, or None when it lies in the supported range."""
    if AS_OF_MIN <= ts < AS_OF_MAX:
        return None
    return (
        f"Expected an as-of date from {AS_OF_MIN:%Y-%m-%d} to before {AS_OF_MAX:%Y-%m-%d}. "
        f"Got {ts.isoformat()}."
    )


def normalize_as_of(value: AsOf) -> pd.Timestamp:
    """``value`` as a UTC timestamp (naive values are taken as UTC).

    Raises:
        FeaturesError: The value is not a date/time, lies outside
            [:data:`AS_OF_MIN`, :data:`AS_OF_MAX`) or is not a whole second.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise FeaturesError(f"Expected as_of to be a date or timestamp. Got {value!r}.") from exc
    if ts is pd.NaT:
        raise FeaturesError(f"Expected as_of to be a date or timestamp. Got {value!r}.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    problem = as_of_out_of_range(ts)
    if problem:
        raise FeaturesError(problem)
    ts = ts.as_unit("ns")
    if ts.value % 1_000_000_000:
        raise FeaturesError(f"Expected as_of to be a whole second. Got {ts.isoformat()}.")
    return ts


def build_cutoffs(
    prepared: EventArrays,
    as_of: AsOf | Sequence[AsOf],
    *,
    spec: FeatureSpec | None = None,
    on_cutoff: Callable[[pd.Timestamp], None] | None = None,
    release: bool = True,
) -> pd.DataFrame:
    """Features as of one date, or a long table over several dates (see
    :meth:`features.events.PreparedEvents.build_features`, which calls this)."""
    spec = spec or default_spec()
    _check_spec(prepared, spec)
    many = _is_many(as_of)
    if many:
        cutoffs = sorted({normalize_as_of(v) for v in as_of})  # type: ignore[union-attr]
        if not cutoffs:
            raise FeaturesError("Expected at least one as_of date. Got an empty list.")
    else:
        cutoffs = [normalize_as_of(as_of)]  # type: ignore[arg-type]
    catalog = feature_catalog(spec)
    # Sizes now, customer codes one cutoff at a time.
    sizes = [int(np.count_nonzero(prepared.signup_us < ts.value // 1000)) for ts in cutoffs]
    output = _Output(catalog, sum(sizes))
    as_of_column: Any = None
    if many:  # built first: its conversions copy, which would add to the final peak
        stamps = np.array([ts.value // 1000 for ts in cutoffs], dtype="datetime64[us]")
        as_of_index = pd.DatetimeIndex(np.repeat(stamps, sizes)).tz_localize("UTC")
        as_of_column = as_of_index.astype(TIMESTAMP_DTYPE).array
        del as_of_index
    pos = 0
    for k, ts in enumerate(cutoffs):
        codes = _codes_at(prepared, ts)
        end = pos + len(codes)
        missing = {"customer_id"} | {info.name for info in catalog}
        # Column groups are copied out as soon as they are computed, so a cutoff
        # holds at most one group of full-length temporaries.
        last = k == len(cutoffs) - 1
        # The last of several cutoffs fills the output on top of everything else:
        # return freed temporaries after each column group (one-cutoff builds peak
        # far lower and skip the cost).
        trim_groups = last and len(cutoffs) > 1
        groups = _column_groups(
            prepared, ts, codes, spec, last=release and last, plan_windows=not trim_groups
        )
        for group in groups:
            output.put(group, pos, end)
            missing.difference_update(group)
            del group
            if trim_groups:
                release_freed_memory()
        if missing:
            raise FeaturesError(
                f"Expected the feature spec to yield every catalogued feature. "
                f"Got none for {sorted(missing)}."
            )
        pos = end
        if len(cutoffs) > 1:
            release_freed_memory()
        if on_cutoff:
            on_cutoff(ts)
    return output.frame(as_of_column if many else None)


class _Output:
    """The output columns, allocated once at full length and filled cutoff by cutoff,
    then handed to the frame without a copy: no per-cutoff frames to concatenate, no
    block consolidation (both would copy the whole output)."""

    def __init__(self, catalog: list[FeatureInfo], total: int) -> None:
        self.catalog = catalog
        self.total = total
        self.arrays: dict[str, np.ndarray] = {
            info.name: np.empty(total, dtype=info.dtype)
            for info in catalog
            if info.dtype in _NUMPY_DTYPES
        }
        self.chunks: dict[str, list[pa.Array]] = {
            name: [] for name in ["customer_id"] + [i.name for i in catalog if i.dtype == "string"]
        }
        # Category features: codes filled like numbers, categories fixed per column.
        self.coded: dict[str, tuple[np.ndarray, pd.Index]] = {}

    def put(self, group: dict[str, Any], start: int, end: int) -> None:
        """Write one cutoff's ``group`` of columns into rows ``start:end``."""
        for name, values in group.items():
            out = self.arrays.get(name)
            if out is not None:
                _fill(out, start, end, values, name)
            elif isinstance(values, Coded):
                if name not in self.coded:
                    column = np.empty(self.total, dtype=values.codes.dtype)
                    self.coded[name] = (column, values.categories)
                _fill(self.coded[name][0], start, end, values.codes, name)
            elif name in self.chunks:
                self.chunks[name].extend(_string_chunks(values))

    def frame(self, as_of_column: Any) -> pd.DataFrame:
        """The feature frame (``as_of`` second when ``as_of_column`` is given)."""
        data: dict[str, Any] = {"customer_id": _string_column(self.chunks.pop("customer_id"))}
        if as_of_column is not None:
            data["as_of"] = as_of_column
        for info in self.catalog:
            found = self.arrays.get(info.name)
            if found is not None:
                data[info.name] = found
            elif info.name in self.coded:
                codes, categories = self.coded.pop(info.name)
                data[info.name] = pd.Categorical.from_codes(
                    codes, dtype=pd.CategoricalDtype(categories, ordered=False), validate=False
                )
            else:
                data[info.name] = _string_column(self.chunks.pop(info.name))
        return pd.DataFrame(data, copy=False)


def _check_spec(
    prepared: EventArrays, spec: FeatureSpec, columns: Sequence[str] | None = None
) -> None:
    if not spec.has("attributes"):
        return
    a = spec.attributes
    columns = list(prepared.customers.columns) if columns is None else list(columns)
    wanted = list(a.columns) + ([a.birth_year_column] if a.birth_year_column else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise SpecError(
            f"The feature spec's attributes {missing} must be columns of the customers "
            f"table. Got columns {list(columns)}: declare them in "
            "tagsmith.yaml or remove them from features.yaml."
        )


def _codes_at(prepared: EventArrays, ts: pd.Timestamp) -> np.ndarray:
    """Codes (ascending, i.e. in ``customer_id`` order) of customers signed up before ``ts``."""
    return np.flatnonzero(prepared.signup_us < ts.value // 1000).astype(_I64)


def _column_groups(
    prepared: EventArrays,
    ts: pd.Timestamp,
    codes: np.ndarray,
    spec: FeatureSpec,
    *,
    last: bool,
    plan_windows: bool = True,
) -> Iterator[dict[str, Any]]:
    """The columns of ``spec`` (and ``customer_id``) at cutoff ``ts`` for ``codes``,
    a few at a time (by family; windowed families by event type).

    With ``last`` (the last cutoff of a releasing call), structures only some
    families read (category groups, purchase days, amount sums) are dropped right
    after their last reader, before the remaining columns fill the output; a later
    call builds them again.

    With ``plan_windows`` each event type's window bounds are found in one pass
    (all of them held until their readers drop them); without, one window at a time.
    The last of several cutoffs goes without: it sets the build's peak memory, and
    holding a type's ten bounds at once put a 12-cutoff build at 1M at 3.01x the
    events (2.99-3.00x before; ~25 MB more) for 1/12 of the time saved.
    """
    windows = _window_days(spec) if plan_windows else None
    cut = Cutoff(prepared, ts.value // 1000, codes, windows=windows)
    yield {"customer_id": prepared.customer_ids.take(pa.array(codes))}
    if last and prepared.orders_counted:
        # Order ids are ready (an earlier cutoff used them): the families with the
        # largest temporaries (rhythm, preference, engagement, rfm) go first, while
        # most of this cutoff's output is still untouched, and the per-call structures
        # are dropped as soon as their readers are done.
        if spec.has("rhythm"):
            yield from rhythm.columns(cut, spec)
        if spec.has("rfm"):
            cut.purchase_day_counts()  # all rfm needs of the purchase days
        prepared.drop_days()
        if spec.has("preference"):
            yield preference.columns(cut, spec.preference.event_type)
        prepared.drop_groups()
        if spec.has("engagement"):
            yield from engagement.columns(cut, spec)
        if spec.has("activity"):
            yield activity.columns(cut)
        if spec.has("rfm"):
            yield rfm.columns(cut)
        cut.forget_customer_arrays()
        yield from _windowed_groups(prepared, cut, spec, release=True)
        if spec.has("attributes"):
            yield attributes.columns(cut, spec, ts)
        return
    # Families reading per-call structures (purchase days, category groups) first,
    # so that at the last cutoff those are dropped before most columns fill the
    # output; families needing order ids come late: those are hashed in the
    # background during the first cutoff.
    if spec.has("rhythm"):
        yield from rhythm.columns(cut, spec)
    if last:
        if spec.has("rfm"):
            cut.purchase_day_counts()  # all rfm needs of the purchase days
        prepared.drop_days()
    if spec.has("preference"):
        yield preference.columns(cut, spec.preference.event_type)
    if last:
        prepared.drop_groups()
    yield from _windowed_groups(prepared, cut, spec, release=False)
    if spec.has("attributes"):
        yield attributes.columns(cut, spec, ts)
    if spec.has("rfm"):
        yield rfm.columns(cut)
    if last:  # windowed and rfm were the readers of amount sums
        prepared.drop_amounts(prepared.event_types)
    if spec.has("activity"):
        yield activity.columns(cut)
    if spec.has("engagement"):
        yield from engagement.columns(cut, spec)


def _window_days(spec: FeatureSpec) -> dict[str, set[int]]:
    """Per event type, the look-backs (days) the windowed and trend families read."""
    if not (spec.has("windowed") or spec.has("trend")):
        return {}
    days = {0, *spec.windows}
    if spec.has("trend"):
        days |= {2 * w for w in spec.windows}
    return {event_type: days for event_type in spec.event_types}


def _windowed_groups(
    prepared: EventArrays, cut: Cutoff, spec: FeatureSpec, *, release: bool
) -> Iterator[dict[str, Any]]:
    """Windowed and trend columns per type; with ``release``, each type's amount
    sums are dropped after its columns (their other reader, rfm, came first)."""
    if not (spec.has("windowed") or spec.has("trend")):
        if release:
            prepared.drop_amounts(prepared.event_types)
        return
    for event_type in spec.event_types:
        yield from windowed.columns(cut, spec, event_type)
        if release:
            prepared.drop_amounts([event_type])
            cut.forget_ends(event_type)  # every other reader came first
    if release:
        prepared.drop_amounts(prepared.event_types)


def _fill(out: np.ndarray, start: int, end: int, values: Any, name: str) -> None:
    """Write one cutoff's ``values`` into ``out[start:end]``, the declared dtype.

    Widening is always allowed; floats may be rounded to a narrower float (the
    catalogue's declared precision) and integers narrowed when every value fits.
    """
    values = np.asarray(values)
    src, dst = values.dtype, out.dtype
    if np.can_cast(src, dst, casting="safe") or (src.kind == "f" and dst.kind == "f"):
        out[start:end] = values
        return
    if src.kind in "iu" and dst.kind == "i":
        info = np.iinfo(dst)
        if len(values) and (int(values.min()) < info.min or int(values.max()) > info.max):
            raise FeaturesError(
                f"Feature '{name}' must fit in {dst}. Got values in "
                f"[{int(values.min())}, {int(values.max())}]."
            )
        out[start:end] = values
        return
    raise FeaturesError(f"Feature '{name}' must be computed as {dst}. Got {src} instead.")


def _string_chunks(values: Any) -> list[pa.Array]:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    arr = arr.cast(pa.large_string())
    return list(arr.chunks) if isinstance(arr, pa.ChunkedArray) else [arr]


def _string_column(chunks: list[pa.Array]) -> pd.api.extensions.ExtensionArray:
    """A pandas ``string`` column over the Arrow ``chunks`` (no copy of the text)."""
    return pd.array(pa.chunked_array(chunks, type=pa.large_string()), dtype="string")


def _is_many(as_of: Any) -> bool:
    return isinstance(as_of, (list, tuple, set, pd.Index, pd.Series, np.ndarray))


class CutoffColumns:
    """One cutoff's features as arrays (:func:`cutoff_columns`), the frame on demand.

    Attributes:
        customer_ids: The rows' ids (large_string), in ``customer_id`` order.
        codes: The rows' customer codes in the event index.
        columns: Feature name -> numpy array in the catalogue's dtype, or
            :class:`~features.families.base.Coded` for a category feature, or an Arrow
            array for a text feature; catalogue order.
        blocks: The numeric features' blocks (:mod:`features.column_blocks`; each
            numeric array of ``columns`` is a row of one), or ``None``.
    """

    def __init__(
        self,
        customer_ids: pa.Array,
        codes: np.ndarray,
        columns: dict[str, Any],
        catalog: list[FeatureInfo],
        blocks: ColumnBlocks | None = None,
    ) -> None:
        self.customer_ids = customer_ids
        self.codes = codes
        self.columns = columns
        self.blocks = blocks
        self._catalog = catalog
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.codes)

    def frame(self) -> pd.DataFrame:
        """The feature frame :func:`build_cutoffs` returns for the same cutoff (same
        columns, dtypes and values, through the same output code), built once."""
        if self._frame is None:
            n = len(self.codes)
            output = _Output(self._catalog, n)
            output.put({"customer_id": self.customer_ids}, 0, n)
            output.put(self.columns, 0, n)
            self._frame = output.frame(None)
        return self._frame


def cutoff_columns(
    prepared: EventArrays,
    cutoff: pd.Timestamp,
    spec: FeatureSpec,
    catalog: list[FeatureInfo] | None = None,
    *,
    columns: Sequence[str] | None = None,
) -> CutoffColumns:
    """Features at one normalised ``cutoff`` as arrays, by the same family code as
    :func:`build_cutoffs` (nothing released: a live call builds a small index per call).
    ``catalog`` is ``feature_catalog(spec)`` when the caller keeps it; ``columns``
    the customers table's columns when the caller knows them (checked against the
    spec's attributes without reading the table).

    Every array is the row's own copy in the catalogue's dtype, converted as the
    frame's output converts it (:func:`_fill`), so nothing a family keeps is shared:
    numeric features are rows of one block per dtype (:mod:`features.column_blocks`).

    Raises:
        SpecError: The spec names an attribute the customers lack.
        FeaturesError: The spec yields a catalogued feature for no family, or a value
            does not fit its declared dtype.
    """
    _check_spec(prepared, spec, columns)
    catalog = feature_catalog(spec) if catalog is None else catalog
    dtypes = _dtypes_of(catalog)
    codes = _codes_at(prepared, cutoff)
    n = len(codes)
    ids: pa.Array | None = None
    found: dict[str, Any] = {}
    blocks = ColumnBlocks(block_layout(dtypes), n)
    rows = blocks.rows()
    for group in _column_groups(prepared, cutoff, codes, spec, last=False):
        for name, values in group.items():
            row = rows.get(name)
            if row is not None:  # a numeric feature: its row of its dtype's block
                array = values if type(values) is np.ndarray else np.asarray(values)
                if array.dtype is row.dtype or plain_assignment(array.dtype, row.dtype):
                    row[...] = array
                else:
                    _fill(row, 0, n, array, name)
                found[name] = row
            elif name == "customer_id":
                ids = values
            elif isinstance(values, Coded):
                found[name] = Coded(values.codes.copy(), values.categories)
            elif name in dtypes:
                found[name] = pa.chunked_array(_string_chunks(values), pa.large_string())
    try:
        ordered = {name: found[name] for name in dtypes}
    except KeyError:
        ordered = {}
    if len(ordered) < len(dtypes) or ids is None:
        missing = sorted(set(dtypes) - set(found)) + ([] if ids is not None else ["customer_id"])
        raise FeaturesError(
            f"Expected the feature spec to yield every catalogued feature. Got none for {missing}."
        )
    return CutoffColumns(ids.cast(pa.large_string()), codes, ordered, catalog, blocks)


_DTYPES: dict[int, tuple[list[FeatureInfo], dict[str, Any]]] = {}


def _dtypes_of(catalog: list[FeatureInfo]) -> dict[str, Any]:
    """Feature name -> numpy dtype (numeric features) or the catalogue's dtype name,
    kept per catalogue list (a live call must not parse 100 dtype names again)."""
    found = _DTYPES.get(id(catalog))
    if found is None or found[0] is not catalog:
        if len(_DTYPES) >= 64:
            _DTYPES.clear()
        found = (
            catalog,
            {
                info.name: np.dtype(info.dtype) if info.dtype in _NUMPY_DTYPES else info.dtype
                for info in catalog
            },
        )
        _DTYPES[id(catalog)] = found
    return found[1]
