"""Attribute family: customer facts as features (age, age band, attribute columns)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import age_band_labels
from features.event_arrays import code_dtype
from features.families.base import Coded, Cutoff
from features.spec import FeatureSpec

__all__ = ["columns"]


def columns(cut: Cutoff, spec: FeatureSpec, ts: pd.Timestamp) -> dict[str, Any]:
    """The attribute columns at ``cut`` (``ts``, the cutoff, gives the ages)."""
    a = spec.attributes
    cols: dict[str, Any] = {}
    if a.birth_year_column:
        age = ts.year - cut.p.birth_years(a.birth_year_column)[cut.codes]
        known = ~np.isnan(age)
        band = np.searchsorted(a.age_bands, np.where(known, age, 0), side="right")
        labels = _band_index(tuple(a.age_bands))
        cols["age"] = age
        cols["age_band"] = Coded(np.where(known, band, -1).astype(code_dtype(len(labels))), labels)
    for column in a.columns:
        codes, categories = cut.p.attribute_codes(column)
        cols[column] = Coded(codes[cut.codes], categories)
    return cols


@functools.lru_cache(maxsize=64)
def _band_index(age_bands: tuple[int, ...]) -> pd.Index:
    """The age bands' labels (kept: building a text index costs ~0.2 ms, which a live
    call of one customer would pay every time; indexes are immutable)."""
    return pd.Index(age_band_labels(list(age_bands)), dtype="str")
