"""Shared set-up of the live scoring tests."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import FactsConfig
from scoring.live import LiveScorer
from tags.catalogue import LIBRARY_DIR, Catalogue


@pytest.fixture(scope="module")
def scorer() -> LiveScorer:
    """A live scorer over the standard tag catalogue and the default facts contract."""
    return LiveScorer(catalogue=Catalogue.load(LIBRARY_DIR), facts=FactsConfig())


def sorted_text(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as text, rows sorted: tag tables compare without row order or dtypes."""
    text = table.astype(str)
    return text.sort_values(list(text.columns)).reset_index(drop=True)
