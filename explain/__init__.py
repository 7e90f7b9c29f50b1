"""Why a customer has each tag: rule traces, model reasons, and who may see which feature.

* :mod:`explain.trace` and :mod:`explain.rules`: a rule or fact tag's clauses for one
  customer, with feature values and the population thresholds of the run's date;
* :mod:`explain.visibility`: the features (and attribute facts) a role may see: only
  those feeding a tag the role may see;
* :mod:`explain.profile` and :mod:`explain.lookup`: a customer's profile built from
  the project's stores.

Depends on ``features``, ``tags`` and ``scoring`` only; ``serving``, ``console`` and
the ``tagsmith`` CLI use it (an import-linter contract checks both directions).
"""

from __future__ import annotations

from explain.errors import ExplainError, UnknownCustomerError
from explain.lookup import CustomerExplainer
from explain.profile import CustomerProfile, TagLine, Transition
from explain.rules import TagTrace, population_thresholds, trace_tag
from explain.trace import Clause, Term
from explain.visibility import FeatureVisibility

__all__ = [
    "Clause",
    "CustomerExplainer",
    "CustomerProfile",
    "ExplainError",
    "FeatureVisibility",
    "TagLine",
    "TagTrace",
    "Term",
    "Transition",
    "UnknownCustomerError",
    "population_thresholds",
    "trace_tag",
]
