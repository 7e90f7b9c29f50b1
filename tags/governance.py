"""The ``governance`` section of ``tagsmith.yaml``: how the catalogue is combed and kept.

Each part is owned by the module that applies it (``tags.lint`` for redundancy and
dead tags); this model only composes them so the project config has one section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tags.lint import LintConfig

__all__ = ["GovernanceConfig"]


class GovernanceConfig(BaseModel):
    """``governance:`` in ``tagsmith.yaml``.

    Attributes:
        lint: Thresholds of ``tagsmith tags lint`` (overlap, similar names, dead tags).
    """

    model_config = ConfigDict(extra="forbid")

    lint: LintConfig = Field(default_factory=LintConfig)
