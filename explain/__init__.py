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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names are imported from their modules on first use: `import explain.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "ExplainError": "explain.errors",
    "UnknownCustomerError": "explain.errors",
    "CustomerExplainer": "explain.lookup",
    "CustomerProfile": "explain.profile",
    "TagLine": "explain.profile",
    "Transition": "explain.profile",
    "TagTrace": "explain.rules",
    "population_thresholds": "explain.rules",
    "trace_tag": "explain.rules",
    "Clause": "explain.trace",
    "Term": "explain.trace",
    "FeatureVisibility": "explain.visibility",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
