"""Synthetic customers and events with a known truth: the simulator, its oracles, a Bayes bound.

Beside the package stack: it imports ``features`` (the fact contract its output
follows) and nothing else; only ``tagsmith`` (the ``generate`` command and the oracle
comparison of ``train``), tests, benchmarks and notebooks import it.
"""

from __future__ import annotations

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
