"""Point-in-time behaviour features from fact tags, as of any date: :func:`build_features`.

:func:`build_features` turns canonical customers and events into one row per customer
who signed up before ``as_of``, using only events with ``occurred_at < as_of``. Every
feature and its exact definition (including when it is null) is listed by
:func:`features.catalog.feature_catalog`.

How it is fast: the events are coded and sorted once into an event index
(:mod:`features.events`), which serves any number of cutoffs without sorting again;
counts are differences of ``searchsorted`` bounds, sums are differences of prefix sums
(of fixed-point integers, so they are exact and do not depend on input row order), and
each family (:mod:`features.families`) is a few vectorised passes.

Missing-value semantics (the same everywhere): counts and sums are 0 when nothing
happened; "days since X" is null when X never happened (``never_purchased`` says why
``recency_days`` is null); ratios are null when their denominator is 0; trends are 0
when both windows are empty; attributes are null when the fact is missing.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from features.cutoffs import AsOf
from features.events import prepare_events
from features.spec import FeatureSpec

__all__ = ["build_features"]


def build_features(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: AsOf | Iterable[AsOf],
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """Point-in-time features, one row per customer with ``signup_at < as_of``.

    Only events with ``occurred_at < as_of`` are used. With a list of cutoffs the
    result is a long table (``customer_id``, ``as_of``, features...), computed from one
    sort of the events. Rows are ordered by ``customer_id`` (within ``as_of``).

    Args:
        customers: Canonical customers table (:func:`features.schema.customers_frame`).
        events: Canonical events table (:func:`features.schema.events_frame`).
        as_of: Cutoff date/time (naive values are UTC) or a list of them.
        spec: Feature spec (default: ``features/default_spec.yaml``).

    Raises:
        SchemaError: A table breaks the fact-tag contract.
        FeaturesError: A cutoff is not a whole-second date/time.
        SpecError: The spec needs an attribute the customers table lacks.
    """
    return prepare_events(customers, events).build_features(as_of, spec=spec)  # type: ignore[arg-type]
