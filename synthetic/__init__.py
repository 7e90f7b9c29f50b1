"""Synthetic customers and events with a known truth: the simulator, its oracles, a Bayes bound.

Beside the package stack: it imports ``features`` (the fact contract its output
follows) and nothing else; only ``tagsmith`` (the ``generate`` command and the oracle
comparison of ``train``), tests, benchmarks and notebooks import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthetic.bayes import BayesGrid, bayes_scores
    from synthetic.generator import (
        CATEGORIES,
        SyntheticConfig,
        SyntheticData,
        SyntheticTrace,
        generate,
        oracle_churn_probability,
        oracle_expected_value,
        seasonality,
        write_synthetic,
    )

__all__ = [
    "CATEGORIES",
    "BayesGrid",
    "SyntheticConfig",
    "SyntheticData",
    "SyntheticTrace",
    "bayes_scores",
    "generate",
    "oracle_churn_probability",
    "oracle_expected_value",
    "seasonality",
    "write_synthetic",
]

# Names are imported from their modules on first use: `import synthetic.errors` (the CLI's
# help does it) runs this file, and must not pull in pandas or scikit-learn behind it.
_LAZY: dict[str, str] = {
    "BayesGrid": "synthetic.bayes",
    "bayes_scores": "synthetic.bayes",
    "CATEGORIES": "synthetic.generator",
    "SyntheticConfig": "synthetic.generator",
    "SyntheticData": "synthetic.generator",
    "SyntheticTrace": "synthetic.generator",
    "generate": "synthetic.generator",
    "oracle_churn_probability": "synthetic.generator",
    "oracle_expected_value": "synthetic.generator",
    "seasonality": "synthetic.generator",
    "write_synthetic": "synthetic.generator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
