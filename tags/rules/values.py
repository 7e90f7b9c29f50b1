"""Vectorised values of the rule language and the operations on them.

A value is a whole column (one entry per customer) or a scalar, of one of five kinds:

* ``num``: float64 array, NaN is null.
* ``bool``: bool array plus an optional null mask (three-valued logic, as in SQL).
* ``str``: int codes into an array of categories (code -1 is null), so comparing a
  million strings to a literal is one integer comparison.
* ``date``: int64 nanoseconds since the epoch (UTC) plus a null mask.
* ``null``: the literal ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Val",
    "from_codes",
    "from_numpy",
    "from_series",
    "kind_of_dtype",
    "kind_of_series",
    "truth",
]

NUM, BOOL, STR, DATE, NULL = "num", "bool", "str", "date", "null"
_NAT = np.iinfo(np.int64).min


@dataclass
class Val:
    """One rule value: ``data`` is an array (column) or a Python scalar."""

    kind: str
    data: Any
    null: np.ndarray | None = None
    cats: np.ndarray | None = None

    @property
    def is_scalar(self) -> bool:
        """Whether this is a constant rather than a column."""
        return not isinstance(self.data, np.ndarray)

    def null_mask(self, n: int) -> np.ndarray:
        """Where the value is null, as a bool array of length ``n``."""
        if self.kind == NULL:
            return np.ones(n, dtype=bool)
        if self.is_scalar:
            return np.zeros(n, dtype=bool)
        if self.kind == NUM:
            return np.isnan(self.data)
        if self.kind == STR:
            return np.asarray(self.data < 0)
        if self.null is None:
            return np.zeros(n, dtype=bool)
        return self.null

    def strings(self) -> np.ndarray:
        """Decoded strings of a ``str`` column (object array, ``None`` where null)."""
        assert self.cats is not None
        lookup = np.empty(len(self.cats) + 1, dtype=object)
        lookup[:-1] = self.cats
        return lookup[self.data]


def truth(value: Val, n: int) -> np.ndarray:
    """Where a boolean value is true (null counts as not true), length ``n``."""
    if value.is_scalar:
        return np.full(n, bool(value.data) if value.kind == BOOL else False)
    if value.null is None:
        return value.data
    return value.data & ~value.null


def kind_of_series(series: pd.Series) -> str:
    """The rule-language kind of a DataFrame column."""
    return kind_of_dtype(series.dtype)


def kind_of_dtype(dtype: Any) -> str:
    """The rule-language kind of a column dtype."""
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if isinstance(dtype, pd.CategoricalDtype):
        return STR
    if pd.api.types.is_numeric_dtype(dtype):
        return NUM
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DATE
    return STR


def from_series(series: pd.Series) -> Val:
    """Convert one DataFrame column to a rule value (done once per column and context)."""
    kind = kind_of_series(series)
    if kind == BOOL:
        values = series.to_numpy(dtype=bool, na_value=False)
        null = series.isna().to_numpy() if series.hasnans else None
        return Val(BOOL, values, null=null)
    if kind == NUM:
        # float32 features stay float32: a literal then compares at the feature's own
        # precision (numpy casts a Python float to the array's dtype), so that
        # 'ratio >= 0.7' holds for a ratio stored as float32(0.7).
        dtype = "float32" if series.dtype == np.float32 else "float64"
        return Val(NUM, series.to_numpy(dtype=dtype, na_value=np.nan))
    if kind == DATE:
        stamps = pd.to_datetime(series, utc=True)
        null = stamps.isna().to_numpy()
        ns = stamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
        data = ns.to_numpy().view(np.int64).copy()
        data[null] = _NAT
        return Val(DATE, data, null=null)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        cats = np.array([str(c) for c in series.cat.categories], dtype=object)
        return Val(STR, codes, cats=cats)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    cats = np.array([str(u) for u in uniques], dtype=object)
    return Val(STR, codes.astype(np.int64), cats=cats)


def from_numpy(values: np.ndarray) -> Val:
    """A numpy feature column (bool or numbers, no missing booleans) as a rule value:
    what :func:`from_series` gives for the same column of a frame."""
    if values.dtype == np.bool_:
        return Val(BOOL, values, null=None)
    # float32 stays float32, as in from_series (a literal compares at its precision).
    return Val(NUM, values if values.dtype == np.float32 else values.astype(np.float64, copy=False))


def from_codes(codes: np.ndarray, categories: Any) -> Val:
    """A categorical column (codes, -1 for null, into ``categories``) as a rule value:
    what :func:`from_series` gives for the same ``pd.Categorical``."""
    cats = np.array([str(c) for c in categories], dtype=object)
    return Val(STR, codes.astype(np.int64), cats=cats)
