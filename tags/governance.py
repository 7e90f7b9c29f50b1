"""The ``governance`` section of ``tagsmith.yaml``: how the catalogue is combed and kept.

Each part is owned by the module that applies it (``tags.lint`` for redundancy and
dead tags); this model only composes them so the project config has one section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from features.contract import ConsentConfig

__all__ = ["EncryptionConfig", "GovernanceConfig", "LintConfig"]


class LintConfig(BaseModel):
    """``governance.lint`` in ``tagsmith.yaml``: thresholds of ``tagsmith tags lint``.

    Attributes:
        jaccard: Two tag values whose memberships overlap at least this much (Jaccard,
            |A and B| / |A or B|) in every recent snapshot are reported.
        min_members: Values with fewer members than this are not compared (tiny
            audiences overlap by chance).
        name_similarity: Names at least this similar (difflib ratio, 0..1) within a
            category are reported.
        runs: How many recent snapshots a finding must hold in (overlap, empty, constant).
    """

    model_config = ConfigDict(extra="forbid")

    jaccard: float = Field(default=0.9, gt=0.0, le=1.0)
    min_members: int = Field(default=10, ge=1)
    name_similarity: float = Field(default=0.85, gt=0.0, le=1.0)
    runs: int = Field(default=3, ge=1, le=100)


class EncryptionConfig(BaseModel):
    """``governance.encryption``: where the encryption key comes from (never the key).

    Attributes:
        key_env: Environment variable holding the key(s): URL-safe base64 of 32 bytes,
            the current key first and older ones after commas while rotating.
        key_file: Absolute path of a file holding the key(s) the same way, outside the
            project folder (used when the variable is unset).
    """

    model_config = ConfigDict(extra="forbid")

    key_env: str = "TAGSMITH_ENCRYPTION_KEY"
    key_file: str | None = None


class GovernanceConfig(BaseModel):
    """``governance:`` in ``tagsmith.yaml``.

    Attributes:
        lint: Thresholds of ``tagsmith tags lint`` (overlap, similar names, dead tags).
        encryption: Where the key of encryption at rest comes from.
        consent: Declared purposes (``features.consent``): exports, triggers and syncs
            leave out customers who did not consent to theirs.
    """

    model_config = ConfigDict(extra="forbid")

    lint: LintConfig = Field(default_factory=LintConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
